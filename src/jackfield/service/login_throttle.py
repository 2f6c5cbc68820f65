"""Password guessing is slowed down, per email address.

Every failed login of an email counts. After ``free`` failures in a row, each further
attempt must wait: 1 s after the ``free``-th failure, doubling with every failure after
it, at most 15 minutes. While an email waits, its attempts are refused without looking at
the password -- the right one too: were it let through, guessing at full speed would
still find it. A successful login forgets the failures. An email that names no user
counts the same way, so a refusal tells nothing about which emails exist.

Attempts of one email that arrive together are counted as they begin, not as they end:
while the failures so far leave room for ``n`` more before a wait, at most ``n`` attempts
may be checking a password at once (one when a wait has just ended); the others are
refused at once. Else parallel requests would all pass the check while the first of
them was still hashing, and guess ~40 passwords per wait instead of one.

Kept in memory, per process: it bounds the pace of guessing, it is not a lockout (the
longest anyone can keep an account waiting is the current wait, which a restart ends).
Each node of a cluster allows its own pace.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    checking: int = 0  # attempts begun and not yet ended


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

    @contextmanager
    def attempt(self, email: str) -> Iterator[Attempt]:
        """An attempt to log in as ``email``: raises ``TooManyLoginAttempts`` while the
        email must wait (or as many attempts as it may make are under way); else the
        caller checks the password and says ``failed()`` or ``succeeded()``. An attempt
        that ends without either (an error) counts as neither."""
        with self._lock:
            failures = self._failures.get(email) or _Failures()
            wait = failures.wait_until - self.clock()
            if wait > 0:
                raise TooManyLoginAttempts(wait)
            if failures.checking >= max(self.free - failures.count, 1):
                raise TooManyLoginAttempts(self.first_wait)
            failures.checking += 1
            self._remember(email, failures)
        attempt = Attempt(self, email, failures)
        try:
            yield attempt
        finally:
            if not attempt.ended:
                with self._lock:
                    failures.checking -= 1

    def _failed(self, email: str, failures: _Failures) -> None:
        """(On the attempt's own record, even if it was forgotten meanwhile: then it is
        remembered again, its count intact.)"""
        with self._lock:
            failures.checking -= 1
            current = self._failures.get(email)
            if current is not None and current is not failures:
                failures = current  # forgotten and recorded anew meanwhile: count it there
            failures.count += 1
            beyond = failures.count - self.free
            if beyond >= 0:
                wait = min(self.longest_wait, self.first_wait * 2 ** min(beyond, 32))
                failures.wait_until = self.clock() + wait
            self._remember(email, failures)

    def _succeeded(self, email: str, failures: _Failures) -> None:
        with self._lock:
            failures.checking -= 1
            failures.count, failures.wait_until = 0, 0.0
            if failures.checking <= 0 and self._failures.get(email) is failures:
                del self._failures[email]

    def _remember(self, email: str, failures: _Failures) -> None:
        """Keep ``failures`` as the most recent; forget the oldest beyond ``remembered``."""
        self._failures.pop(email, None)
        self._failures[email] = failures
        while len(self._failures) > self.remembered:
            self._failures.popitem(last=False)


class Attempt:
    """One login attempt under way (``LoginThrottle.attempt``)."""

    def __init__(self, throttle: LoginThrottle, email: str, failures: _Failures) -> None:
        self._throttle, self._email, self._failures = throttle, email, failures
        self.ended = False

    def failed(self) -> None:
        self.ended = True
        self._throttle._failed(self._email, self._failures)

    def succeeded(self) -> None:
        self.ended = True
        self._throttle._succeeded(self._email, self._failures)
