"""The position_tracker actor process. The source of truth for positions and open orders.

Run alone for debugging: `python -m actors.position_tracker --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main


class PositionTracker(Actor):
    name = "position_tracker"

    def setup(self) -> None:
        self.positions = self.publisher("positions")
        self.subscriber(["user", "exec"], self.on_message)
        self.set_ready(True, "bus bound")

    def on_message(self, msg: Message) -> None:
        self.count("messages")


if __name__ == "__main__":
    sys.exit(standalone_main("position_tracker"))
