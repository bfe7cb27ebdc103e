"""Per-source-address rate limit (a token bucket each), for routes anyone can call.

Enrollment secrets are 192-bit, so the limit is not about guessing: it keeps a flood of
attempts from costing CPU, database work and log volume. The table of buckets is
bounded; the least recently seen addresses are forgotten first."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_TRACKED = 10_000


class Throttle:
    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate_per_s, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, source: str) -> float:
        """0.0 when `source` may go ahead (one token spent), else the seconds until it may."""
        now = self._clock()
        tokens, at = self._buckets.pop(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[source] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[source] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
