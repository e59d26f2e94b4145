"""A private tmux server for end-to-end tests that need a real terminal (the console, status --watch)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (Debian: apt-get install -y tmux); the console and the live view "
                         "are tested in a real terminal only")


class Tmux:
    """``tmux -L <socket>``: its own server, so a user's tmux is never touched; ``kill()`` ends it."""

    def __init__(self, name: str) -> None:
        self.sock = f"hip3t-{name}-{os.getpid()}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("HIP3_RUN_DIR", "HIP3_CONFIG", "TMUX")}

    def _run(self, *args: str) -> str:
        assert TMUX is not None
        r = subprocess.run([TMUX, "-L", self.sock, *args], capture_output=True, text=True, timeout=30, env=self.env)
        return r.stdout

    def start(self, window: str, command: str, width: int = 200, height: int = 60) -> None:
        """Run ``command`` in a new window (the first one makes the session); the pane stays after it ends."""
        keep = f"{command}; echo '[exited]'; sleep 600"
        if not self._run("list-sessions"):
            self._run("new-session", "-d", "-s", "t", "-n", window, "-x", str(width), "-y", str(height), keep)
        else:
            self._run("new-window", "-t", "t", "-n", window, keep)

    def capture(self, window: str, history: bool = True) -> str:
        args = ["capture-pane", "-p", "-J", "-t", f"t:{window}"]
        return self._run(*args, *(["-S", "-5000"] if history else []))

    def keys(self, window: str, *keys: str) -> None:
        self._run("send-keys", "-t", f"t:{window}", *keys)

    def wait_for(self, window: str, pattern: str, timeout: float, history: bool = True) -> str:
        """The pane's text once ``pattern`` (a regex, multiline) appears; fails with the pane's text if not."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.capture(window, history)
            if re.search(pattern, text, re.M):
                return text
            time.sleep(0.25)
        raise AssertionError(f"{pattern!r} not on the terminal within {timeout:g} s:\n{text}")

    def kill(self) -> None:
        self._run("kill-server")
