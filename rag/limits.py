"""Per-user limits of a shared chat server: questions a minute, uploads an hour, upload bytes a
day. Each is a sliding window per user, kept in the server process (several servers behind one
address each count their own share).

Use::

    limits = Limits(Settings())
    limits.question("ana")          # raises LimitError past RAG_RATE_LIMIT (30/min by default)
    limits.upload("ana", 120_000)   # past RAG_UPLOADS_PER_HOUR or RAG_UPLOAD_MB_PER_DAY
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RagError

#: Window lengths by the unit a rate is written with: "30/min", "500/hour", "2000/day".
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
         "hour": 3600, "d": 86400, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*([a-z]+?)s?)?\s*$")


class LimitError(RagError):
    """A user went past a limit; the message says which, and when to try again."""


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    def __str__(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(self.seconds)
        return f"{self.count} a {unit}" if unit else f"{self.count} per {self.seconds} s"


def parse_rate(text: str, default_unit: str = "min") -> Rate:
    """``"30/min"`` → ``Rate(30, 60)``; a bare number counts per ``default_unit``.

    >>> parse_rate("30/min"), parse_rate("500/hours"), parse_rate("12")
    (Rate(count=30, seconds=60), Rate(count=500, seconds=3600), Rate(count=12, seconds=60))
    """
    m = _RATE.match(text.lower())
    unit = (m.group(2) or default_unit) if m else None
    if not m or unit not in UNITS or int(m.group(1)) < 1:
        raise RagError(f"{text!r} is not a rate; write it as N/min, N/hour or N/day with N ≥ 1 "
                       "(for example 30/min)")
    return Rate(int(m.group(1)), UNITS[unit])


def _wait(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min" if seconds < 7200 else f"{round(seconds / 3600)} h"


class Window:
    """How much each user spent in the last ``seconds``, spending refused past ``budget``."""

    def __init__(self, budget: float, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.budget, self.seconds, self.clock = budget, seconds, clock
        self._spent: dict[str, deque[tuple[float, float]]] = defaultdict(deque)
        self._lock = threading.Lock()

    def spend(self, user: str, amount: float = 1) -> float:
        """Record ``amount`` for ``user``; when it would go past the budget, record nothing
        and return how many seconds until it would fit (0.0 when it was recorded)."""
        now = self.clock()
        with self._lock:
            spent = self._spent[user]
            while spent and spent[0][0] <= now - self.seconds:
                spent.popleft()
            total = sum(a for _, a in spent)
            if total + amount <= self.budget:
                spent.append((now, amount))
                return 0.0
            if amount > self.budget:
                return float(self.seconds)
            # the oldest entries must leave the window before ``amount`` fits
            for at, a in spent:
                total -= a
                if total + amount <= self.budget:
                    # never more than the window: at + seconds - now can round above it
                    return min(at + self.seconds - now, float(self.seconds))
            return float(self.seconds)

    def refund(self, user: str) -> None:
        """Take back ``user``'s last spending (an action refused by another limit)."""
        with self._lock:
            if self._spent[user]:
                self._spent[user].pop()


class Limits:
    """The limits of the settings, per user name."""

    def __init__(self, settings, clock: Callable[[], float] = time.monotonic):
        rate = parse_rate(settings.rate_limit)
        self.questions = Window(rate.count, rate.seconds, clock)
        self.rate = rate
        self.uploads = Window(settings.uploads_per_hour, 3600, clock)
        self.upload_bytes = Window(settings.upload_mb_per_day * 1024 * 1024, 86400, clock)
        self.settings = settings

    def question(self, user: str) -> None:
        if wait := self.questions.spend(user):
            raise LimitError(f"slow down: {self.rate} questions per user; try again in "
                             f"{_wait(wait)}")

    def upload(self, user: str, size: int) -> None:
        """One article added by ``user`` (an uploaded file or a URL) of ``size`` bytes."""
        if wait := self.uploads.spend(user):
            raise LimitError(f"upload limit reached: {self.settings.uploads_per_hour} articles "
                             f"an hour per editor; try again in {_wait(wait)}")
        if wait := self.upload_bytes.spend(user, size):
            self.uploads.refund(user)
            raise LimitError(f"upload limit reached: {self.settings.upload_mb_per_day:g} MB a day "
                             f"per editor; try again in {_wait(wait)}")
