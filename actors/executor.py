"""The executor actor process. The only process that holds the key and makes nonces: gates,
batches, signs and posts orders.

Run alone for debugging: `python -m actors.executor --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main


class Executor(Actor):
    name = "executor"

    def setup(self) -> None:
        self.exec = self.publisher("exec")
        self.puller("intents", self.on_message)
        self.subscriber(["md", "positions"], self.on_message)
        self.set_ready(True, "bus bound")

    def on_message(self, msg: Message) -> None:
        self.count("messages")


if __name__ == "__main__":
    sys.exit(standalone_main("executor"))
