"""Asset registry of one HIP-3 dex, built from ``perpDexs`` + ``meta(dex)``.

Guards against:

* SILVER orders executed on RIVN (in the Rust original) because the asset index was taken from the
  alphabetical ``assetToStreamingOiCap`` list. The id is ``100000 + perp_dex_index × 10000 + index in
  meta(dex).universe``, counting delisted entries, and nothing else.
* GOLD sizes rounded to zero because ``szDecimals`` came from ``metaAndAssetCtxs`` without the
  dex. ``szDecimals``/``maxLeverage`` come from ``meta(dex)`` only.
* A configured market without a spec (every order failed "MarketSpec not found"), or two names that differ
  only in case, stop the build with a clear ``AssetError`` instead of trading on a guess.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

__all__ = ["HIP3_ASSET_BASE", "AssetError", "AssetRegistry", "AssetSpec", "UnknownMarkets", "asset_id", "did_you_mean"]

HIP3_ASSET_BASE = 100_000
_DEX_STRIDE = 10_000


class AssetError(ValueError):
    """The registry cannot be built or a lookup failed."""


class UnknownMarkets(AssetError):
    """Configured markets the dex does not list: ``missing`` maps each to its closest listed names (a typo's
    "did you mean"), ``known`` is the dex's whole universe."""

    def __init__(self, dex: str, missing: dict[str, tuple[str, ...]], known: tuple[str, ...]) -> None:
        self.dex = dex
        self.missing = missing
        self.known = known
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per unknown market."""
        return [f"market {coin!r} is not listed by dex {self.dex!r}" + _suggestion(near)
                for coin, near in self.missing.items()]


def _suggestion(near: tuple[str, ...]) -> str:
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else " (no listed name is close)"


def did_you_mean(coin: str, known: Iterable[str], n: int = 2) -> tuple[str, ...]:
    """The listed names closest to ``coin``, compared without the dex prefix (every name shares it, which
    would make any two names look alike) and case-insensitively: ``xyz:SILVR`` -> ``xyz:SILVER``."""
    def bare(name: str) -> str:
        return name.split(":", 1)[-1].lower()

    by_bare: dict[str, list[str]] = {}
    for name in known:
        by_bare.setdefault(bare(name), []).append(name)
    near = difflib.get_close_matches(bare(coin), list(by_bare), n=n, cutoff=0.6)
    return tuple(name for b in near for name in by_bare[b])[:n]


class AssetSpec(msgspec.Struct, frozen=True):
    coin: str  # the full name verbatim, e.g. "xyz:SILVER"
    asset: int  # the wire id used in actions
    sz_decimals: int
    max_leverage: int
    is_delisted: bool = False


def asset_id(perp_dex_index: int, index_in_meta: int) -> int:
    """HIP-3 asset id: 100000 + perp_dex_index × 10000 + index_in_meta."""
    if perp_dex_index < 1:
        raise AssetError(f"perp_dex_index must be >= 1 for a builder dex, got {perp_dex_index}")
    if not 0 <= index_in_meta < _DEX_STRIDE:
        raise AssetError(f"index_in_meta out of range: {index_in_meta}")
    return HIP3_ASSET_BASE + perp_dex_index * _DEX_STRIDE + index_in_meta


def _parsed(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        try:
            return json.loads(bytes(data) if not isinstance(data, str) else data)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise AssetError(f"not JSON: {exc}") from None
    return data


def _int_field(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AssetError(f"{where}: field {key!r} must be a non-negative int, got {value!r}")
    return value


class AssetRegistry:
    """Specs of one builder dex's assets, looked up by coin name or by asset id."""

    def __init__(self, dex: str, perp_dex_index: int, specs: Sequence[AssetSpec]) -> None:
        self.dex = dex
        self.perp_dex_index = perp_dex_index
        self.specs: tuple[AssetSpec, ...] = tuple(specs)
        self._by_coin = {s.coin: s for s in self.specs}
        self._by_asset = {s.asset: s for s in self.specs}
        suffixes: dict[str, list[AssetSpec]] = {}
        for s in self.specs:
            if ":" in s.coin:
                suffixes.setdefault(s.coin.split(":", 1)[1], []).append(s)
        self._by_suffix = {k: v[0] for k, v in suffixes.items() if len(v) == 1}

    @staticmethod
    def find_dex(perp_dexs: Any, pattern: str) -> tuple[int, str]:
        """(index, name) of the first perpDexs entry whose name contains ``pattern`` (case-insensitive)."""
        dexs = _parsed(perp_dexs)
        if not isinstance(dexs, list):
            raise AssetError(f"perpDexs must be a JSON array, got {type(dexs).__name__}")
        if not pattern:
            raise AssetError("dex pattern is empty")
        needle = pattern.lower()
        for index, entry in enumerate(dexs):  # nulls (the validator dex) keep their position
            if isinstance(entry, dict):
                name = entry.get("name")
                if isinstance(name, str) and needle in name.lower():
                    if index == 0:
                        raise AssetError(f"dex {name!r} at index 0 is not a builder dex")
                    return index, name
        names = [e.get("name") for e in dexs if isinstance(e, dict)]
        raise AssetError(f"no perp dex name contains {pattern!r}; dexes: {names}")

    @classmethod
    def build(
        cls,
        perp_dexs_json: Any,
        meta_json: Any,
        pattern: str,
        configured_markets: Iterable[str] = (),
    ) -> AssetRegistry:
        """Build from the ``perpDexs`` and ``meta`` (with ``dex``) responses (raw bytes/str or parsed).

        Raises ``AssetError`` for a missing dex, a malformed universe, duplicate names (case-insensitive),
        or a configured market that is not in the universe.
        """
        index, dex = cls.find_dex(perp_dexs_json, pattern)
        meta = _parsed(meta_json)
        if isinstance(meta, list) and meta and isinstance(meta[0], dict):
            meta = meta[0]  # metaAndAssetCtxs shape [meta, ctxs]
        if not isinstance(meta, dict) or not isinstance(meta.get("universe"), list):
            raise AssetError("meta response has no 'universe' array")
        specs: list[AssetSpec] = []
        seen: dict[str, str] = {}
        for pos, entry in enumerate(meta["universe"]):
            where = f"meta(dex={dex}).universe[{pos}]"
            if not isinstance(entry, dict):
                raise AssetError(f"{where} is not an object: {entry!r}")
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise AssetError(f"{where}: missing name")
            folded = name.lower()
            if folded in seen:
                raise AssetError(f"{where}: duplicate asset name {name!r} (also {seen[folded]!r})")
            seen[folded] = name
            specs.append(
                AssetSpec(
                    coin=name,
                    asset=asset_id(index, pos),
                    sz_decimals=_int_field(entry, "szDecimals", where),
                    max_leverage=_int_field(entry, "maxLeverage", where),
                    is_delisted=entry.get("isDelisted") is True,
                )
            )
        registry = cls(dex, index, specs)
        missing = [m for m in configured_markets if registry.find(m) is None]
        if missing:
            known = tuple(s.coin for s in specs)
            raise UnknownMarkets(dex, {m: did_you_mean(m, known) for m in missing}, known)
        return registry

    def find(self, coin: str) -> AssetSpec | None:
        """Exact name, else the unique asset whose name ends with ``:coin``; None if unknown."""
        spec = self._by_coin.get(coin)
        if spec is None and ":" not in coin:
            spec = self._by_suffix.get(coin)
        return spec

    def by_coin(self, coin: str) -> AssetSpec:
        spec = self.find(coin)
        if spec is None:
            raise AssetError(f"unknown coin {coin!r} in dex {self.dex!r}")
        return spec

    def by_asset(self, asset: int) -> AssetSpec:
        spec = self._by_asset.get(asset)
        if spec is None:
            raise AssetError(f"unknown asset id {asset} in dex {self.dex!r}")
        return spec

    def __contains__(self, coin: object) -> bool:
        return isinstance(coin, str) and self.find(coin) is not None

    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        return f"AssetRegistry(dex={self.dex!r}, index={self.perp_dex_index}, assets={len(self.specs)})"
