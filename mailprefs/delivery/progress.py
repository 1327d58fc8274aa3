"""A progress bar for `run-due` on a terminal; silent when output is not a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType

WIDTH = 30


class Progress:
    def __init__(self, stream=None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = 0
        self.done = 0
        self._drawn = 0.0
        self._started = time.monotonic()

    @classmethod
    def for_terminal(cls, enabled: bool = True) -> Progress:
        return cls(sys.stderr, enabled)

    def expect(self, total: int) -> None:
        self.total = total
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        total = max(self.total, self.done, 1)
        filled = self.done * WIDTH // total
        rate = self.done / max(now - self._started, 1e-6)
        self.stream.write(
            f"\r  [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{total} {rate:.0f} msg/s "
        )
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self.enabled and (self.done or self.total):
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
