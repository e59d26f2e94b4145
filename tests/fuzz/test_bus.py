"""Fuzz: the bus decoder (every message type: truncated, bit-flipped, wrong-typed, missing fields,
unknown tags, deep nesting, huge, hostile values) never raises out of a receive, and every malformed
message is counted by the ``Receiver`` and, at actor level, reported in the heartbeat and the log.

Hostile values that are well-typed (NaN, inf, negative sizes, absurd exponents, empty and odd strings)
pass the bus by design (it checks types); the executor, the last stop before the exchange, refuses
them as intents without raising."""

from __future__ import annotations

import random
import threading
import time
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hip3.messages as m
from hip3.execution.core import ExecutionCore
from hip3.execution.journal import SentIntentJournal
from hip3.execution.params import ExecutorParams, RiskParams, SoftGateParams
from hip3.messages import EntryIntent, FlattenIntent, Heartbeat
from hip3.runtime.actor import Actor
from hip3.runtime.bus import Bus, Receiver
from tests.conftest import make_config
from tests.execution.helpers import SPECS, snap
from tests.terms_helpers import known_terms

from .conftest import tally
from .mutate import LogLines

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES: list[type[m.Msg]] = list(typing.get_args(m.Message))

_I64 = st.integers(-(2**63), 2**63 - 1)
_TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", "\u0000", "\U0001f642", "\u202e", "x" * 300]))
_DEC = st.one_of(st.decimals(allow_nan=True, allow_infinity=True, places=None),
                 st.sampled_from([Decimal("-1"), Decimal("0"), Decimal("1E+999999"), Decimal("1E-999999"),
                                  Decimal("-0"), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity")]))


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    """Every value of ``tp`` the bus can carry, hostile ones included."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[for_type(a) for a in typing.get_args(tp)])
    if origin is tuple:
        return st.lists(for_type(typing.get_args(tp)[0]), max_size=3).map(tuple)
    if origin is dict:
        k, v = typing.get_args(tp)
        return st.dictionaries(for_type(k), for_type(v), max_size=4)
    if tp is type(None):
        return st.none()
    if tp is str:
        return _TEXT
    if tp is bool:
        return st.booleans()
    if tp is int:
        return _I64
    if tp is float:
        return st.floats(allow_nan=True, allow_infinity=True)
    if tp is Decimal:
        return _DEC
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return struct_of(tp)
    raise AssertionError(f"no strategy for {tp!r}")


def struct_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    fields = {f.name: for_type(f.type) for f in msgspec.structs.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


messages = st.sampled_from(TYPES).flatmap(struct_of)


def _required(cls: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(cls) if f.required]


def _wrong_value(tp: Any) -> Any:
    """A value no decoder of ``tp`` accepts (a str field gets an int, anything else a non-numeric string)."""
    args = typing.get_args(tp) or (tp,)
    return 12345 if str in args else "\u2603 not a value"


def known_bad(rng: random.Random, msg: m.Msg) -> tuple[str, bytes]:
    """A damaged encoding of ``msg`` that must be refused, and the kind of damage."""
    raw = m.encode(msg)
    fields = {f.name: f for f in msgspec.structs.fields(type(msg))}
    as_map: dict[str, Any] = msgspec.msgpack.decode(raw)
    kind = rng.choice(["truncated", "wrong_type", "missing", "unknown_tag", "deep", "garbage", "not_a_map", "ext"])
    if kind == "truncated":
        return kind, raw[: rng.randrange(len(raw))]
    if kind == "wrong_type":
        name = rng.choice(list(fields))
        as_map[name] = _wrong_value(fields[name].type)
    elif kind == "missing":
        req = _required(type(msg))
        if not req:
            return "unknown_tag", msgspec.msgpack.encode({**as_map, "t": "nope"})
        del as_map[rng.choice(req)]
    elif kind == "unknown_tag":
        as_map["t"] = rng.choice(["", "BBO", "\u2603", "x" * 200, 7])
    elif kind == "deep":
        deep = b"\x91" * rng.choice([100, 10_000, 200_000]) + b"\xc0"
        name = rng.choice(list(fields))
        # a map whose value for `name` is a deeply nested array, spliced in by hand (msgpack has no limit)
        as_map.pop(name)
        head = msgspec.msgpack.encode({**as_map, name: None})
        return kind, head[:-1] + deep if head.endswith(b"\xc0") else head + deep
    elif kind == "garbage":
        return kind, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 2000))) + b"\xc1"  # 0xc1: never valid
    elif kind == "not_a_map":
        return kind, msgspec.msgpack.encode(rng.choice([[1, 2], "bbo", 3.5, None, [as_map]]))
    else:
        return kind, b"\xc7\x03\x05abc"  # an ext type
    return kind, msgspec.msgpack.encode(as_map)


def _receiver() -> Receiver:
    return Receiver(None, [])  # type: ignore[arg-type]  # decode() needs no socket


@FUZZ
@given(messages, st.randoms(use_true_random=False))
def test_every_message_type_survives_damage_and_every_refusal_is_counted(msg: m.Msg, rng: random.Random) -> None:
    rcv = _receiver()
    raw = m.encode(msg)
    assert isinstance(rcv.decode(raw), type(msg)) and rcv.bad == 0  # hostile but well-typed values pass
    tally("bus: well-typed messages with hostile values (every type)")
    for _ in range(4):
        kind, bad = known_bad(rng, msg)
        before = rcv.bad
        assert rcv.decode(bad) is None, (kind, bad[:100])
        tally(f"bus: {kind}")
        assert rcv.bad == before + 1 and rcv.last_error
    for _ in range(4):  # bit flips: may or may not still decode; a refusal is always counted
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        before, got = rcv.bad, rcv.received
        out = rcv.decode(bytes(b))
        tally("bus: bit flips, fed")
        tally("bus: bit flips, refused and counted", int(out is None))
        assert (out is None and rcv.bad == before + 1) or (out is not None and rcv.received == got + 1)


def test_huge_messages_decode_or_are_counted() -> None:
    rcv = _receiver()
    big = m.Alert(level="warning", actor="x", text="\U0001f642" * 1_000_000)
    assert rcv.decode(m.encode(big)) == big
    hb = m.Heartbeat(actor="a", pid=1, ready=True, hardstop_epoch=1, stats={str(i): i for i in range(100_000)})
    assert rcv.decode(m.encode(hb)) == hb
    assert rcv.decode(b"\xdd\xff\xff\xff\xff") is None  # an array header claiming 4 G elements, no body
    assert rcv.decode(b"\xdf\xff\xff\xff\xff") is None  # a map header claiming 4 G entries
    assert rcv.bad == 2


# ---------------------------------------------------------------- hostile values at the executor


def _core(tmp: Path) -> ExecutionCore:
    j = SentIntentJournal(tmp, now_ms=1, retention_ms=10**9)
    core = ExecutionCore(ExecutorParams(max_notional_per_market_usd=1000.0, max_total_notional_usd=5000.0),
                         RiskParams(), SoftGateParams(), SPECS, j, terms=known_terms(SPECS))
    for c in SPECS:
        core.gates.set_mark(c, 10.0)
    return core


_coins = st.sampled_from([*SPECS, "", "xyz:gold", "\u2603", "x" * 200])
_intent_ids = st.one_of(st.text(max_size=10), st.sampled_from(["", " ", "a b", "x" * 200, "\n"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_hostile_intents_are_refused_by_the_executor_never_raised(tmp_path: Path, data: st.DataObject) -> None:
    core = _core(tmp_path / str(time.monotonic_ns()))
    for _ in range(5):
        cls: type[m.Msg] = data.draw(st.sampled_from([EntryIntent, FlattenIntent]))  # type: ignore[assignment]
        kw = data.draw(st.fixed_dictionaries({f.name: for_type(f.type) for f in msgspec.structs.fields(cls)}))
        kw.update(coin=data.draw(_coins), intent_id=data.draw(_intent_ids))
        if data.draw(st.booleans()) and kw["coin"] in SPECS:
            kw["asset"] = SPECS[kw["coin"]].asset  # get past the asset check to the value checks
        intent = msgspec.msgpack.decode(m.encode(cls(**kw)), type=EntryIntent | FlattenIntent)  # as delivered
        tally("executor intake: intents with hostile values")
        if isinstance(intent, EntryIntent):
            verdict, _events = core.submit_entry(intent, snapshot=snap(), now_ns=1, now_ms=1)
        else:
            verdict = core.submit_flatten(intent, now_ns=1)
        if verdict.accepted:  # only sane values get through
            assert intent.sz.is_finite() and intent.sz > 0 and intent.px.is_finite() and intent.px > 0
            assert intent.coin in SPECS


# ---------------------------------------------------------------- actor level: counted and logged


class _Sink(Actor):
    name = "fuzz_sink"

    def setup(self) -> None:
        self.got: list[m.Message] = []
        self.puller("intents", self.got.append)
        self.subscriber(["md"], self.got.append)
        self.set_ready(True, "sink")


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.term()


def test_actor_counts_and_logs_every_malformed_bus_message(run_dir: Path, ctx: Any) -> None:
    cfg = make_config(run_dir, "[bus]\ntransport = \"inproc\"\n[supervisor]\nheartbeat_interval_ms = 50\n")
    sup = Bus(cfg, "supervisor", context=ctx, run_dir=run_dir)
    inbox = sup.puller("inbox")
    feed = Bus(cfg, "feed", context=ctx, run_dir=run_dir)
    md = feed.publisher("md")
    lines = LogLines("hip3.fuzz_sink").__enter__()
    stop = threading.Event()
    actor = _Sink(cfg, context=ctx, stop_event=stop)
    t = threading.Thread(target=actor.run, daemon=True)
    t.start()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    try:
        deadline = time.monotonic() + 10
        while not getattr(actor, "ready", False) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert actor.ready
        push.connect(sup.address("intents"))
        rng = random.Random(5)
        samples = [m.Shutdown(reason="r"), m.Alert(level="warning", actor="a", text="t"),
                   m.Bbo(coin="xyz:GOLD", bid_px=1.0, bid_sz=1.0, ask_px=2.0, ask_sz=1.0, exch_ms=1, recv_ns=1)]
        n_bad = n_good = 0
        kinds: dict[str, int] = {}
        deadline = time.monotonic() + 5
        while md.subscriptions == 0 and time.monotonic() < deadline:  # the sink's SUB has joined
            md.on_subscription()
            time.sleep(0.01)
        for i in range(400):
            good = rng.random() < 0.3
            msg = rng.choice(samples)
            data = m.encode(msg) if good else known_bad(rng, msg)[1]
            if not good:
                kind = known_bad(random.Random(i), msg)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            if i % 2:
                push.send(data)
            else:
                md.sock.send(data)
            n_good += good
            n_bad += not good
        hb: list[Heartbeat] = []

        def settled() -> bool:
            hb.extend(x for x in inbox.drain() if isinstance(x, Heartbeat) and x.actor == "fuzz_sink")
            return bool(hb) and hb[-1].stats.get("bad_messages", 0) >= n_bad and len(actor.got) >= n_good

        deadline = time.monotonic() + 10
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hb and hb[-1].stats.get("bad_messages") == n_bad, (n_bad, hb[-1].stats if hb else None)
        tally("bus, actor level: malformed messages sent", n_bad)
        assert len(actor.got) == n_good
        time.sleep(0.2)  # one more heartbeat: the log line follows the counter
        logged = [r for r in lines.records if r.getMessage() == "bad_messages"]
        assert sum(r.fields["new"] for r in logged) == n_bad  # type: ignore[attr-defined]
        assert all(r.fields["last_error"] for r in logged)  # type: ignore[attr-defined]
    finally:
        stop.set()
        t.join(10)
        lines.__exit__()
        push.close()
        feed.close()
        sup.close()
    assert not t.is_alive()
