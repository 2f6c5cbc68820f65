"""Password guessing is slowed down, per email address.

Every failed login of an email counts. After ``free`` failures in a row, each further
attempt must wait: 1 s after the ``free``-th failure, doubling with every failure after
it, at most 15 minutes. While an email waits, its attempts are refused without looking at
the password -- the right one too: were it let through, guessing at full speed would
still find it. A successful login forgets the failures. An email that names no user
counts the same way, so a refusal tells nothing about which emails exist.

Kept in memory, per process: it bounds the pace of guessing, it is not a lockout (the
longest anyone can keep an account waiting is the current wait, which a restart ends).
Each node of a cluster allows its own pace.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..kernel.errors import AuthenticationError


class TooManyLoginAttempts(AuthenticationError):
    code = "too_many_attempts"
    default_remediation = "Wait, then log in again."

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed logins for this email: try again in {self.retry_after} s"
        )


@dataclass
class _Failures:
    count: int = 0
    wait_until: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        *,
        free: int = 5,
        first_wait: float = 1.0,
        longest_wait: float = 15 * 60,
        remembered: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.first_wait, self.longest_wait = free, first_wait, longest_wait
        self.remembered = remembered  # emails kept; the longest unfailed are forgotten
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, email: str) -> None:
        """Raise ``TooManyLoginAttempts`` while ``email`` must wait."""
        with self._lock:
            failures = self._failures.get(email)
            wait = failures.wait_until - self.clock() if failures is not None else 0.0
        if wait > 0:
            raise TooManyLoginAttempts(wait)

    def failed(self, email: str) -> None:
        with self._lock:
            failures = self._failures.pop(email, None) or _Failures()
            self._failures[email] = failures  # the most recent failure last
            failures.count += 1
            beyond = failures.count - self.free
            if beyond >= 0:
                wait = min(self.longest_wait, self.first_wait * 2 ** min(beyond, 32))
                failures.wait_until = self.clock() + wait
            while len(self._failures) > self.remembered:
                self._failures.popitem(last=False)

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._failures.pop(email, None)
