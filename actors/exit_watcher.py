"""The exit_watcher actor process. Mirrors positions and decides exits on every market update; emits flatten intents.

Run alone for debugging: `python -m actors.exit_watcher --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main


class ExitWatcher(Actor):
    name = "exit_watcher"

    def setup(self) -> None:
        self.intents = self.bus.pusher("intents")
        self.subscriber(["md", "positions", "exec"], self.on_message)
        self.set_ready(True, "bus bound")

    def on_message(self, msg: Message) -> None:
        self.count("messages")


if __name__ == "__main__":
    sys.exit(standalone_main("exit_watcher"))
