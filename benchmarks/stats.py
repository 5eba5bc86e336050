"""The few statistics the benchmark reports: medians with their spread, percentiles, ratios.

Every figure is measured in several rounds; a figure is reported as the median of its rounds
with the smallest and largest value beside it, never as a single best run. A kop figure is
compared with Tansu's as the ratio of the two medians; because the rounds alternate between
the brokers, the ratio of each round's pair is also given, to show how far load on the machine
moved it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median and range of one figure over its rounds."""
    median: float
    minimum: float
    maximum: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("a summary needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def relative_spread(self) -> float:
        """(max - min) / median: 0.1 means the rounds lay within 10 % of the median."""
        if self.median == 0:
            return 0.0 if self.maximum == self.minimum else math.inf
        return (self.maximum - self.minimum) / abs(self.median)

    def to_json(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.minimum, "max": self.maximum,
                "n": self.count}

    @classmethod
    def from_json(cls, data: dict) -> Summary:
        return cls(data["median"], data["min"], data["max"], data["n"])


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; infinite when only the denominator is zero, 1 when both are."""
    if denominator == 0:
        return 1.0 if numerator == 0 else math.inf
    return numerator / denominator


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values: the smallest value with at least
    `fraction` of all values at or below it (so p99.9 of 1,000 values is the largest)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside [0, 1]")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


# Where the latency CDF is sampled: dense in the tail, which is what the plot is read for.
CDF_FRACTIONS: tuple[float, ...] = (
    *(i / 100 for i in range(1, 100)),
    0.991, 0.992, 0.993, 0.994, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1.0,
)


def cdf_points(sorted_values: Sequence[float],
               fractions: Sequence[float] = CDF_FRACTIONS) -> list[tuple[float, float]]:
    """[(value, fraction at or below it)]: a CDF small enough to keep in the JSON results."""
    return [(percentile(sorted_values, fraction), fraction) for fraction in fractions]
