"""Asset registry: ids and szDecimals from meta(dex) order, never from assetToStreamingOiCap or
metaAndAssetCtxs."""

from __future__ import annotations

import json

import pytest

from hip3.hyperliquid.assets import AssetError, AssetRegistry, AssetSpec, UnknownMarkets, asset_id, did_you_mean

NAMES = [f"xyz:A{i:02d}" for i in range(26)] + ["xyz:SILVER", "xyz:RIVN", "xyz:GOLD", "xyz:CL"]


def perp_dexs() -> list[object]:
    return [
        None,
        {
            "name": "xyz",
            "fullName": "XYZ",
            "deployer": "0x" + "11" * 20,
            "oracleUpdater": None,
            "feeRecipient": None,
            # Alphabetical: using this order sent SILVER orders to RIVN.
            "assetToStreamingOiCap": [[n, "100000.0"] for n in sorted(NAMES)],
        },
        {"name": "flx", "fullName": "Felix"},
    ]


def meta(names: list[str] = NAMES) -> dict[str, object]:
    universe: list[dict[str, object]] = []
    for i, n in enumerate(names):
        e: dict[str, object] = {"szDecimals": i % 5, "name": n, "maxLeverage": 10 + i % 3, "marginTableId": 10}
        if i == 3:
            e["isDelisted"] = True
        universe.append(e)
    if len(universe) > 26:
        universe[26]["szDecimals"] = 2
    return {"universe": universe, "marginTables": [], "collateralToken": 0}


def test_regression_b13_mapping() -> None:
    reg = AssetRegistry.build(json.dumps(perp_dexs()).encode(), meta(), "XYZ", ["xyz:SILVER", "RIVN", "xyz:CL"])
    assert reg.dex == "xyz" and reg.perp_dex_index == 1
    assert reg.by_coin("xyz:SILVER").asset == 110026
    assert reg.by_coin("xyz:RIVN").asset == 110027
    assert reg.by_coin("xyz:CL").asset == 110029
    assert reg.by_coin("SILVER") == reg.by_coin("xyz:SILVER")
    assert reg.by_asset(110027).coin == "xyz:RIVN"
    assert reg.by_coin("xyz:SILVER") == AssetSpec("xyz:SILVER", 110026, 2, 12, False)
    assert reg.by_coin("xyz:A03").is_delisted  # delisted entries keep their slot
    assert reg.by_coin("xyz:A04").asset == 110004
    assert len(reg) == 30 and "xyz:GOLD" in reg and "xyz:NOPE" not in reg


def test_dex_index_counts_nulls_and_metaandctxs_shape() -> None:
    dexs = [None, {"name": "test"}, None, {"name": "myxyzdex"}]
    reg = AssetRegistry.build(dexs, [meta(["myxyzdex:ABC"]), [{}]], "xyz", [])
    assert reg.perp_dex_index == 3 and reg.by_coin("ABC").asset == 130000


@pytest.mark.parametrize(
    ("dexs", "meta_obj", "markets", "msg"),
    [
        (perp_dexs(), meta(), ["xyz:NOPE"], "not listed by dex"),
        (perp_dexs(), meta(["xyz:AB", "xyz:ab"]), [], "duplicate"),
        (perp_dexs(), meta(), [], None),
        ([None], meta(), [], "no perp dex"),
        ({"x": 1}, meta(), [], "array"),
        (perp_dexs(), {"nouniverse": []}, [], "universe"),
        (perp_dexs(), {"universe": [{"name": "xyz:A", "szDecimals": "2", "maxLeverage": 3}]}, [], "szDecimals"),
        (perp_dexs(), b"{not json", [], "JSON"),
    ],
)
def test_build_errors(dexs: object, meta_obj: object, markets: list[str], msg: str | None) -> None:
    if msg is None:
        AssetRegistry.build(dexs, meta_obj, "xyz", markets)
        return
    with pytest.raises(AssetError, match=msg):
        AssetRegistry.build(dexs, meta_obj, "xyz", markets)


def test_ambiguous_suffix_needs_full_name() -> None:
    reg = AssetRegistry.build(perp_dexs(), meta(["xyz:A", "xyz:B"]), "xyz", [])
    assert reg.find("A") is not None
    with pytest.raises(AssetError):
        reg.by_asset(999)
    with pytest.raises(AssetError):
        reg.by_coin("C")


def test_asset_id_bounds() -> None:
    assert asset_id(1, 0) == 110000
    with pytest.raises(AssetError):
        asset_id(0, 1)
    with pytest.raises(AssetError):
        asset_id(1, 10000)


def test_a_misspelt_market_is_named_with_the_closest_listed_names() -> None:
    with pytest.raises(UnknownMarkets) as info:
        AssetRegistry.build(perp_dexs(), meta(), "xyz", ["xyz:GOLD", "xyz:SILVR", "xyz:gold2", "xyz:ZZZZZZZZ"])
    err = info.value
    assert list(err.missing) == ["xyz:SILVR", "xyz:gold2", "xyz:ZZZZZZZZ"]
    assert err.missing["xyz:SILVR"] == ("xyz:SILVER",)
    assert err.missing["xyz:gold2"][0] == "xyz:GOLD"  # case-insensitive
    assert err.missing["xyz:ZZZZZZZZ"] == ()
    assert err.lines()[0] == "market 'xyz:SILVR' is not listed by dex 'xyz' (did you mean 'xyz:SILVER'?)"
    assert err.lines()[2].endswith("(no listed name is close)")
    assert "xyz:A25" in err.known and len(err.known) == len(NAMES)
    assert isinstance(err, AssetError)  # the actors' setup handles it as before


def test_did_you_mean_without_the_dex_prefix() -> None:
    assert did_you_mean("SILVR", ["SILVER", "GOLD"]) == ("SILVER",)
    assert did_you_mean("xyz:TSLA", []) == ()
