"""What every benchmark shares: figures with their baseline, ratio and target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    # target: ratio >= min_ratio (throughput) or ratio <= max_ratio (time, memory)
    min_ratio: float | None = None
    max_ratio: float | None = None
    limit: float | None = None  # absolute ceiling for `value` (e.g. p99 ms, MB)

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool:
        ok = True
        if self.ratio is not None and self.min_ratio is not None:
            ok &= self.ratio >= self.min_ratio
        if self.ratio is not None and self.max_ratio is not None:
            ok &= self.ratio <= self.max_ratio
        if self.limit is not None:
            ok &= self.value <= self.limit
        return ok

    def line(self) -> str:
        text = f"{self.name}: {self.value:,.1f} {self.unit}"
        if self.baseline is not None:
            text += f" | baseline {self.baseline_name}: {self.baseline:,.1f} {self.unit}"
            text += f" | ratio {self.ratio:.2f}x"
        targets = []
        if self.min_ratio is not None:
            targets.append(f">= {self.min_ratio}x")
        if self.max_ratio is not None:
            targets.append(f"<= {self.max_ratio}x")
        if self.limit is not None:
            targets.append(f"<= {self.limit:g} {self.unit}")
        if targets:
            text += f" | target {' and '.join(targets)}: {'met' if self.met else 'NOT MET'}"
        return text
