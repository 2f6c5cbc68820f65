"""Delays: a message's retry policy and a unit's restart backoff.

Both are capped exponential backoff with jitter, for different reasons:

* message retries use *full* jitter (a random delay between 0 and the cap of the
  attempt), which spreads a burst of failed messages out best; a ``Retry-After`` from
  the external system is a floor, never shortened (but no wait exceeds a day);
* unit restarts use a narrow jitter band (±25 %) so consecutive delays still grow
  visibly (1 s, 2 s, 4 s, ... 60 s) while restarts of many units do not synchronize.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# No retry waits longer than a day: a Retry-After holding a timestamp (a server's
# mistake) or an absurd ``retry.max_seconds`` would otherwise park a message for years,
# or overflow the date its next attempt is stored under.
MAX_DELAY_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, a message is tried before it goes to ``dead``."""

    base_seconds: float = 1.0
    max_seconds: float = 300.0
    max_attempts: int = 10

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempts`` (1-based)."""
        cap = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempts - 1))
        delay = random.uniform(0, cap)
        if retry_after is not None and retry_after > delay:
            delay = float(retry_after)
        return min(delay, MAX_DELAY_SECONDS)

    def with_overrides(self, config: Mapping[str, Any]) -> RetryPolicy:
        """This policy adjusted by a connector's optional ``retry.*`` params.

        ``retry.max_attempts``, ``retry.base_seconds`` and ``retry.max_seconds`` may be
        set on any connector (params are text, so numbers arrive as strings); values that
        do not parse or are out of range are ignored, keeping the default.
        """
        retry = config.get("retry")
        if not isinstance(retry, Mapping):
            return self
        return RetryPolicy(
            base_seconds=_number(retry.get("base_seconds"), self.base_seconds, float),
            max_seconds=_number(retry.get("max_seconds"), self.max_seconds, float),
            max_attempts=int(_number(retry.get("max_attempts"), self.max_attempts, int)),
        )


@dataclass(frozen=True)
class Backoff:
    """Restart delays of a supervised unit: ``base * 2**n`` within ±25 %, capped."""

    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def delay(self, restarts: int) -> float:
        """The delay before restart number ``restarts + 1`` (``restarts`` from 0)."""
        nominal = min(self.max_seconds, self.base_seconds * 2.0 ** max(0, restarts))
        return float(min(self.max_seconds, nominal * random.uniform(0.75, 1.25)))


def _number(value: Any, default: float, kind: type) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(kind(value))
    except (TypeError, ValueError):
        return default
    return number if 0 < number < math.inf else default


def positive_int(value: Any, default: int) -> int:
    """An optional positive integer param (``runtime.concurrency``), else ``default``."""
    return int(_number(value, default, int))
