"""The detector actor process. Market state, risk gates and the dislocation detector; emits entry intents.

Run alone for debugging: `python -m actors.detector --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main


class Detector(Actor):
    name = "detector"

    def setup(self) -> None:
        self.signals = self.publisher("signals")
        self.intents = self.bus.pusher("intents")
        self.subscriber(["md", "positions", "exec"], self.on_message)
        self.set_ready(True, "bus bound")

    def on_message(self, msg: Message) -> None:
        self.count("messages")


if __name__ == "__main__":
    sys.exit(standalone_main("detector"))
