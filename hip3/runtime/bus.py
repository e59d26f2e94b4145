"""The message bus: named endpoints, ZeroMQ sockets and msgspec codecs.

Rules this module enforces:

* Endpoints come from one place, by name (``ENDPOINTS``); the transport (``inproc``, ``ipc`` under the
  run directory, ``tcp``) is configuration, and actor code is the same for all three.
* The long-lived side binds: publishers bind their PUB, the executor binds its PULL, the supervisor
  binds control/inbox/ctl. Everyone else connects. A restarted actor rebinds the same endpoint.
* PUB/SUB drops silently, so every message carries its sender's sequence number (stamped here on
  send) and every receiver counts gaps per sender. A sequence number that goes *down* is a restarted
  sender, not a gap.
* State streams (hard stop, feed state, positions) are published from XPUB sockets that remember the
  latest value per key and send it again whenever a subscriber joins, so a late joiner has the current
  state before it acts (ZeroMQ's "last value cache" pattern).
* PUSH sockets set ``IMMEDIATE`` so nothing queues for a peer that is not connected (intents have a
  deadline; stale ones must not be delivered later), and never block: a full or absent peer is a
  counted, logged drop.
* ``LINGER`` is set on every socket so shutdown never hangs. A context never crosses a fork.
* A malformed message is counted and returned as ``None``; it never raises out of a receive.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import msgspec
import zmq

from hip3.config import Config
from hip3.messages import Message, Msg, wire_prefix

# name -> (kind of the binding side, tcp port offset). Every endpoint hip3 uses is listed here.
ENDPOINTS: dict[str, tuple[str, int]] = {
    "control": ("xpub", 0),  # supervisor -> every actor: hard-stop state, shutdown
    "inbox": ("pull", 1),  # every actor -> supervisor: heartbeats, READY, hard-stop requests/acks
    "ctl": ("router", 2),  # operator CLI -> supervisor (request/reply)
    "md": ("xpub", 3),  # feed -> detector, exit_watcher, executor: market data + feed state
    "user": ("xpub", 4),  # feed -> position_tracker, executor: orderUpdates, userFills
    "intents": ("pull", 5),  # detector, exit_watcher -> executor
    "exec": ("xpub", 6),  # executor -> position_tracker, exit_watcher, detector: order events
    "positions": ("xpub", 7),  # position_tracker -> exit_watcher, executor, detector: snapshots, closes
    "signals": ("xpub", 8),  # detector -> recorder
}

_IPC_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class BusError(Exception):
    """A bus endpoint cannot be used (unknown name, path too long, address in use)."""


def endpoint_address(cfg: Config, name: str, run_dir: Path | None = None) -> str:
    """The ZeroMQ address of endpoint ``name`` under ``cfg``'s transport."""
    if name not in ENDPOINTS:
        raise BusError(f"unknown bus endpoint {name!r}; known: {', '.join(sorted(ENDPOINTS))}")
    run = run_dir or cfg.run_path
    transport = cfg.bus.transport
    if transport == "tcp":
        return f"tcp://{cfg.bus.tcp_host}:{cfg.bus.tcp_base_port + ENDPOINTS[name][1]}"
    if transport == "inproc":
        # Unique per run directory, so several buses can live in one test process.
        tag = hashlib.blake2s(str(run).encode(), digest_size=6).hexdigest()
        return f"inproc://hip3-{tag}-{name}"
    path = run / "sock" / name
    if len(str(path)) > _IPC_PATH_MAX:
        raise BusError(
            f"ipc socket path too long ({len(str(path))} > {_IPC_PATH_MAX} bytes): {path}; use a shorter run_dir"
        )
    return f"ipc://{path}"


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory and its socket directory, readable by the user only (0700)."""
    for d in (run_dir, run_dir / "sock", run_dir / "logs"):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, stat.S_IRWXU)


class GapCounter:
    """Counts sequence gaps per sender. A lower sequence number means the sender restarted."""

    __slots__ = ("_last", "gaps", "restarts")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.gaps = 0
        self.restarts = 0

    def check(self, src: str, seq: int) -> None:
        last = self._last.get(src)
        self._last[src] = seq
        if last is None:
            return
        if seq > last + 1:
            self.gaps += seq - last - 1
        elif seq <= last:
            self.restarts += 1


class _Socket:
    """Common parts: the zmq socket, its endpoint, and the sender stamp."""

    def __init__(self, sock: zmq.Socket[bytes], address: str, src: str) -> None:
        self.sock = sock
        self.address = address
        self.src = src
        self._seq = 0
        self._enc = msgspec.msgpack.Encoder(decimal_format="string")
        self.dropped = 0

    def _stamp(self, msg: Msg) -> bytes:
        self._seq += 1
        msgspec.structs.force_setattr(msg, "seq", self._seq)
        msgspec.structs.force_setattr(msg, "src", self.src)
        return self._enc.encode(msg)

    def close(self) -> None:
        self.sock.close()


class Publisher(_Socket):
    """A bound XPUB that stamps, encodes and sends; it keeps the latest state per key for late joiners.

    ``publish(msg)`` sends a stream message (market data, events). ``publish(msg, state_key=k)``
    also remembers ``msg`` as the current value of ``k``; when a new subscriber joins (the XPUB socket
    becomes readable), ``on_subscription()`` sends every remembered value again with fresh sequence
    numbers. The owner must poll ``sock`` for POLLIN and call ``on_subscription``.
    """

    def __init__(self, sock: zmq.Socket[bytes], address: str, src: str) -> None:
        super().__init__(sock, address, src)
        self._state: dict[str, Msg] = {}
        self.subscriptions = 0

    def publish(self, msg: Msg, state_key: str | None = None) -> None:
        if state_key is not None:
            self._state[state_key] = msg
        try:
            self.sock.send(self._stamp(msg), zmq.NOBLOCK)
        except zmq.Again:  # XPUB drops at the high-water mark anyway; count it
            self.dropped += 1

    def republish_state(self) -> None:
        for msg in list(self._state.values()):
            self.publish(msg)

    def on_subscription(self) -> int:
        """Drain subscription frames; resend the state once if anyone subscribed. Returns the count."""
        joined = 0
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frame[:1] == b"\x01":
                joined += 1
        if joined:
            self.subscriptions += joined
            self.republish_state()
        return joined


class Pusher(_Socket):
    """A connected PUSH that never blocks: a full or absent peer is a counted drop (returns False)."""

    def send(self, msg: Msg) -> bool:
        try:
            self.sock.send(self._stamp(msg), zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.dropped += 1
            return False


class Receiver:
    """A SUB (connected to one or more publishers) or a bound PULL, with gap and error counting."""

    def __init__(self, sock: zmq.Socket[bytes], addresses: list[str], count_gaps: bool = True) -> None:
        self.sock = sock
        self.addresses = addresses
        self.count_gaps = count_gaps
        self._dec: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
        self.gap_counter = GapCounter()
        self.bad = 0
        self.last_error = ""
        self.received = 0

    def decode(self, frame: bytes) -> Message | None:
        """Decode one frame; a malformed one is counted and gives ``None``."""
        try:
            msg = self._dec.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:  # bad UTF-8 in a str
            self.bad += 1
            self.last_error = str(e)[:200]
            return None
        self.received += 1
        if self.count_gaps:
            self.gap_counter.check(msg.src, msg.seq)
        return msg

    def recv(self, block: bool = False) -> Message | None:
        """One message, or ``None`` if nothing is waiting (non-blocking) or the frame was malformed."""
        try:
            frame = self.sock.recv(0 if block else zmq.NOBLOCK)
        except zmq.Again:
            return None
        return self.decode(frame)

    def drain(self, limit: int = 10000) -> Iterable[Message]:
        """Every message waiting now (at most ``limit``), malformed ones skipped (and counted)."""
        sock = self.sock
        dec = self.decode
        for _ in range(limit):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = dec(frame)
            if msg is not None:
                yield msg

    @property
    def gaps(self) -> int:
        return self.gap_counter.gaps

    def close(self) -> None:
        self.sock.close()


class Bus:
    """Creates the sockets of one actor (or of the supervisor) for a config.

    One ``Bus`` per process, or one shared by every thread of an inproc test (pass the shared
    ``context``). ``name`` is the owner's name, used as the sender stamp ``src``.
    """

    def __init__(self, cfg: Config, name: str, context: zmq.Context[zmq.Socket[bytes]] | None = None,
                 run_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name = name
        self.run_dir = run_dir or cfg.run_path
        self._own_context = context is None
        self.ctx: zmq.Context[zmq.Socket[bytes]] = context if context is not None else zmq.Context()
        self._sockets: list[_Socket | Receiver] = []
        self._raw: list[zmq.Socket[bytes]] = []

    def address(self, endpoint: str) -> str:
        return endpoint_address(self.cfg, endpoint, self.run_dir)

    def _new(self, kind: int, hwm: int | None = None) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, self.cfg.bus.linger_ms)
        if hwm is not None:
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
        return sock

    def _bind(self, sock: zmq.Socket[bytes], endpoint: str) -> str:
        address = self.address(endpoint)
        if address.startswith("ipc://"):
            path = Path(address[len("ipc://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            # A stale socket file from a killed process: a restarted actor rebinds the same endpoint.
            if path.exists():
                path.unlink()
        try:
            sock.bind(address)
        except zmq.ZMQError as e:
            sock.close(0)
            raise BusError(f"cannot bind {endpoint} at {address}: {e}") from None
        if address.startswith("ipc://"):
            os.chmod(address[len("ipc://"):], stat.S_IRUSR | stat.S_IWUSR)
        return address

    def _hwm(self, endpoint: str) -> int:
        return self.cfg.bus.md_hwm if endpoint == "md" else self.cfg.bus.event_hwm

    def publisher(self, endpoint: str) -> Publisher:
        """Bind the XPUB of ``endpoint`` (the owner is its only publisher)."""
        sock = self._new(zmq.XPUB, self._hwm(endpoint))
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, so each joiner gets the state
        address = self._bind(sock, endpoint)
        pub = Publisher(sock, address, f"{self.name}/{endpoint}")
        self._sockets.append(pub)
        return pub

    def subscriber(self, endpoints: Iterable[str], only: tuple[type[Msg], ...] = ()) -> Receiver:
        """Connect one SUB to the publishers of ``endpoints``.

        ``only``: receive just these message types (filtered at the publisher, so the process is not
        woken for the rest); empty means everything. Gap counting then sees the sender's sequence
        numbers skip over the filtered types, so it is off for a filtered receiver.
        """
        eps = list(endpoints)
        hwm = max(self._hwm(e) for e in eps)
        sock = self._new(zmq.SUB, hwm)
        for prefix in [wire_prefix(t) for t in only] or [b""]:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        addresses = [self.address(e) for e in eps]
        for a in addresses:
            sock.connect(a)
        rcv = Receiver(sock, addresses, count_gaps=not only)
        self._sockets.append(rcv)
        return rcv

    def puller(self, endpoint: str) -> Receiver:
        """Bind the PULL of ``endpoint`` (intents at the executor, the supervisor's inbox)."""
        sock = self._new(zmq.PULL, self.cfg.bus.event_hwm)
        address = self._bind(sock, endpoint)
        rcv = Receiver(sock, [address])
        self._sockets.append(rcv)
        return rcv

    def pusher(self, endpoint: str, immediate: bool = True) -> Pusher:
        """Connect a PUSH to ``endpoint``. ``immediate``: queue nothing for a peer that is not there."""
        sock = self._new(zmq.PUSH, self.cfg.bus.event_hwm)
        if immediate:
            sock.setsockopt(zmq.IMMEDIATE, 1)
        address = self.address(endpoint)
        sock.connect(address)
        p = Pusher(sock, address, f"{self.name}/{endpoint}")
        self._sockets.append(p)
        return p

    def router(self, endpoint: str) -> zmq.Socket[bytes]:
        """Bind the ROUTER of the operator control endpoint (request/reply with JSON bodies)."""
        sock = self._new(zmq.ROUTER)
        self._bind(sock, endpoint)
        self._raw.append(sock)
        return sock

    def close(self) -> None:
        """Close every socket (with LINGER set, this never hangs) and the context if owned."""
        for s in self._sockets:
            s.close()
        for r in self._raw:
            r.close()
        self._sockets.clear()
        self._raw.clear()
        if self._own_context:
            self.ctx.term()
