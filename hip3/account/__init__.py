"""The account at the exchange, as entries depend on it: the traded dex's collateral (``collateral``) and
the opt-in transfer that funds it (``funding``), this account's fees and the markets' open-interest caps
(``market_terms``), the exchange's clock seen from this host (``exchange_clock``), and the one reason
they fold into (``entry_conditions``). Pure decisions; the feed, the position tracker, the detector, the
executor and the supervisor feed them and act on them."""
