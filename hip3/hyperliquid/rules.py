"""Exchange rules hip3 and its simulator must agree on, where the exchange's documentation is silent.

One place, so the first live session can settle each one by changing a constant.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

__all__ = ["MIN_ORDER_VALUE_USD", "REDUCE_ONLY_MIN_VALUE", "ReduceOnlyMinValue"]

# The exchange's minimum order value: ``Order must have minimum value of $10.`` [DOCS]
MIN_ORDER_VALUE_USD = Decimal(10)

ReduceOnlyMinValue = Literal["enforced", "exempt_full_close", "exempt"]

# [UNVERIFIED] Does the $10 minimum apply to a reduce-only order? The docs list the error and no
# exemption. Public clients disagree: Hummingbot's Hyperliquid connector lets reduce-only closes below
# the minimum through (its PR for dust closes says the exchange takes them), others send the whole
# position (the SDK's market_close) to get out of a remainder below $10. hip3 assumes the exchange takes
# a reduce-only order below $10 that closes the WHOLE position (its size covers the position; the
# exchange cuts it to the position) and refuses a partial one. hip3's exits always close the whole
# position, so under this rule a remainder below $10 closes; if the exchange refuses it anyway, hip3 marks
# the position as dust it cannot close, says so once and stops retrying (``hip3.execution.dust``).
REDUCE_ONLY_MIN_VALUE: ReduceOnlyMinValue = "exempt_full_close"
