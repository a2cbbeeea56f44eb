"""Detection settings: the thresholds of the three patterns, the chunk size and the file size.

The defaults are the contract's; every value can be changed for a stream, and the state records
the settings it was started with so that a stream is never resumed under different rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from decimal import Decimal

MAX_THRESHOLD_DECIMALS = 18
"""Decimals a decimal threshold may have: compared exactly with integer cents in DECIMAL(38, 18)."""


@dataclass(frozen=True)
class DetectionConfig:
    chunk_size: int = 10_000
    """Transactions per chunk: chunk i holds rows [i * chunk_size, (i + 1) * chunk_size)."""
    upgrade_min_merchant_transactions: int = 50_000
    """UPGRADE applies to merchants with strictly more transactions than this."""
    upgrade_count_quantile: Decimal = Decimal("0.90")
    """A customer's count must reach this quantile (quantile_cont) of the merchant's counts."""
    upgrade_weight_quantile: Decimal = Decimal("0.10")
    """A customer's weight must not exceed this quantile (quantile_cont) of the merchant's weights."""
    child_min_transactions: int = 80
    """CHILD needs at least this many transactions with the merchant..."""
    child_max_average_amount: Decimal = Decimal("23")
    """...and an average amount strictly below this."""
    dei_min_female_customers: int = 100
    """DEI-NEEDED needs strictly more clear-female customers than this (and fewer than male)."""
    rows_per_file: int = 50
    """Detections per output file."""

    def __post_init__(self) -> None:
        for name in ("upgrade_count_quantile", "upgrade_weight_quantile", "child_max_average_amount"):
            object.__setattr__(self, name, Decimal(str(getattr(self, name))))
        for name in ("chunk_size", "rows_per_file"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("upgrade_count_quantile", "upgrade_weight_quantile"):
            if not Decimal(0) <= getattr(self, name) <= Decimal(1):
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        for name in ("upgrade_min_merchant_transactions", "child_min_transactions", "dei_min_female_customers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        amount = self.child_max_average_amount
        if not amount.is_finite() or -amount.as_tuple().exponent > MAX_THRESHOLD_DECIMALS:
            raise ValueError(f"child_max_average_amount must be a number with at most {MAX_THRESHOLD_DECIMALS} decimals, got {amount}")

    def to_json(self) -> dict[str, int | str]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, int | str]) -> DetectionConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
