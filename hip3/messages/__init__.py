"""Every message that crosses the bus, in one tagged union.

Rules (architecture.md, conventions.md):

* Every message is a frozen msgspec ``Struct`` with a short tag (the ``t`` field on the wire) and is
  encoded as a msgpack map, so fields can be appended in later versions and older readers still decode.
  Fields are only ever appended, never reordered or renamed.
* Every message carries its publisher's sequence number ``seq`` and name ``src``. The bus stamps both
  when it sends (``hip3.runtime.bus``), so receivers can count gaps: PUB/SUB drops silently.
* Every message that descends from an exchange frame carries that frame's receive time
  (``time.monotonic_ns()`` in the feed; comparable across processes on one host), so tick-to-trade is
  measured, not guessed.
* Market data carries floats (hot-path comparisons only). Anything that reaches the wire or the books
  (limit prices, sizes, fills, positions, PnL) is an exact ``Decimal`` (a decimal string on the bus).

Encoders and decoders are created once per socket by ``hip3.runtime.bus``; ``DECODER``/``ENCODER`` below are
shared instances for code that is not attached to a socket.
"""

from __future__ import annotations

import msgspec

from hip3.messages.base import Msg
from hip3.messages.control import (
    Alert,
    HardStopAck,
    HardStopProgress,
    HardStopRequest,
    HardStopState,
    Heartbeat,
    MarketLine,
    MarketView,
    Ready,
    Shutdown,
)
from hip3.messages.market import (
    AssetCtx,
    Bbo,
    ExchangeClock,
    FeedState,
    OrderUpdate,
    UserFill,
)
from hip3.messages.orders import (
    EntryIntent,
    Fill,
    FlattenIntent,
    OrderAcked,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
)
from hip3.messages.positions import (
    DexCollateral,
    MarketTerm,
    MarketTerms,
    OpenOrder,
    Position,
    PositionClosed,
    PositionSnapshot,
    RequestBudgetReading,
)
from hip3.messages.signals import (
    Signal,
    SignalFollowup,
)

__all__ = [
    "DECODER",
    "ENCODER",
    "Alert",
    "AssetCtx",
    "Bbo",
    "DexCollateral",
    "EntryIntent",
    "ExchangeClock",
    "FeedState",
    "Fill",
    "FlattenIntent",
    "HardStopAck",
    "HardStopProgress",
    "HardStopRequest",
    "HardStopState",
    "Heartbeat",
    "MarketLine",
    "MarketTerm",
    "MarketTerms",
    "MarketView",
    "Message",
    "Msg",
    "OpenOrder",
    "OrderAcked",
    "OrderCancelled",
    "OrderFilled",
    "OrderRejected",
    "OrderSubmitted",
    "OrderUpdate",
    "Position",
    "PositionClosed",
    "PositionSnapshot",
    "Ready",
    "RequestBudgetReading",
    "Shutdown",
    "Signal",
    "SignalFollowup",
    "UserFill",
    "decode",
    "encode",
    "wire_prefix",
]

Message = (
    Bbo
    | AssetCtx
    | FeedState
    | ExchangeClock
    | OrderUpdate
    | UserFill
    | EntryIntent
    | FlattenIntent
    | OrderSubmitted
    | OrderAcked
    | OrderFilled
    | OrderRejected
    | OrderCancelled
    | Fill
    | PositionSnapshot
    | PositionClosed
    | MarketTerms
    | Signal
    | SignalFollowup
    | HardStopState
    | HardStopRequest
    | HardStopAck
    | HardStopProgress
    | Heartbeat
    | Ready
    | Shutdown
    | Alert
    | RequestBudgetReading
    | MarketView
)

def wire_prefix(cls: type[Msg]) -> bytes:
    """The first bytes of every encoded ``cls`` message: the map header and the tag (encoded first).

    ZeroMQ SUB sockets filter by prefix at the publisher, so a subscriber can ask for some message
    types only (``hip3.runtime.bus.Bus.subscriber(..., only=...)``) and is never woken for the others. The
    prefixes of the union's types are distinct and none is a prefix of another (tested). Publisher and
    subscriber must run the same message definitions (the header counts the fields).
    """
    n = len(cls.__struct_fields__) + 1  # the fields and the tag
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    tag = str(cls.__struct_config__.tag).encode()
    return head + b"\xa1t" + bytes([0xA0 | len(tag)]) + tag


ENCODER = msgspec.msgpack.Encoder(decimal_format="string")
DECODER: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(msg: Msg) -> bytes:
    """Encode one message with the shared encoder."""
    return ENCODER.encode(msg)


def decode(data: bytes) -> Message:
    """Decode one message with the shared decoder; raises ``msgspec.DecodeError`` on bad input."""
    return DECODER.decode(data)
