"""The feed actor process. Owns the market-data connection and publishes typed market data and the
account's user events.

Run alone for debugging: `python -m actors.feed --config configs/default.toml`.
"""

from __future__ import annotations

import sys

from hip3.messages import Message
from hip3.runtime.actor import Actor
from hip3.runtime.runner import standalone_main


class Feed(Actor):
    name = "feed"

    def setup(self) -> None:
        self.md = self.publisher("md")
        self.user = self.publisher("user")
        self.set_ready(True, "bus bound")

    def on_message(self, msg: Message) -> None:
        self.count("messages")


if __name__ == "__main__":
    sys.exit(standalone_main("feed"))
