"""Dates for filtering searches: the ``since`` / ``until`` bounds a user gives, and the day an
article was published, both as day numbers (proleptic Gregorian ordinals) so a filter over
many passages is one array comparison.

>>> date_range("2024", "2024-03")
(738886, 738976)
>>> day_of("2024-03-05T10:00:00Z") == day_of("2024-03-05")
True
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from email.utils import parsedate_to_datetime

from .errors import QueryError

#: What ``since`` and ``until`` accept.
BOUND_FORMAT = "YYYY-MM-DD (or YYYY-MM, or YYYY)"
#: An article without a date (or one that cannot be read): never inside a date filter.
NO_DAY = -1

_BOUND = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")
_ISO_START = re.compile(r"\s*(\d{4})-(\d{2})-(\d{2})(?![\d])")
_YEAR_MONTH = re.compile(r"\s*(\d{4})(?:-(\d{2}))?\s*$")
#: Dates written out, as news pages print them ("March 5, 2024", "5 Mar 2024", "2024/03/05").
_TEXT_DATES = ("%B %d, %Y", "%b %d, %Y", "%b. %d, %Y", "%d %B %Y", "%d %b %Y", "%Y/%m/%d")


def parse_bound(text: str, *, end: bool, name: str = "date") -> int:
    """The day number of a ``since`` bound (``end=False``: a bare year or month starts on its
    first day) or an ``until`` bound (``end=True``: it ends on its last day); a
    :class:`~rag.errors.QueryError` saying the format when ``text`` is not such a date.

    >>> parse_bound("2024-02", end=True) == dt.date(2024, 2, 29).toordinal()
    True
    """
    m = _BOUND.fullmatch(str(text).strip())
    try:
        if not m:
            raise ValueError
        year = int(m.group(1))
        month = int(m.group(2)) if m.group(2) else (12 if end else 1)
        if m.group(3):
            day = int(m.group(3))
        else:
            day = calendar.monthrange(year, month)[1] if end else 1
        return dt.date(year, month, day).toordinal()
    except (ValueError, calendar.IllegalMonthError):
        raise QueryError(f"{name} {text!r} is not a date; write it as {BOUND_FORMAT}") from None


def date_range(since: str | None, until: str | None) -> tuple[int, int] | None:
    """``(first, last)`` day numbers, both inclusive, for the bounds given (None when neither
    is); a :class:`~rag.errors.QueryError` when one is malformed or ``since`` is after
    ``until``."""
    if since is None and until is None:
        return None
    first = parse_bound(since, end=False, name="since") if since is not None else 0
    last = parse_bound(until, end=True, name="until") if until is not None else 10**7
    if first > last:
        raise QueryError(f"since {since!r} is after until {until!r}; no article can be in "
                         "between: swap them or widen the range")
    return first, last


def day_of(date: str) -> int:
    """The day number of an article's date (ISO ``2024-03-05``, with or without a time;
    ``2024-03`` or ``2024`` count as their first day; an RFC 2822 feed date; a date written
    out, such as ``Mar 5, 2024``), or :data:`NO_DAY` when it has none or it cannot be read.

    >>> day_of("Mar 5, 2024") == day_of("5 March 2024") == day_of("2024-03-05")
    True
    """
    if not date:
        return NO_DAY
    try:
        if m := _ISO_START.match(date):
            return dt.date(*map(int, m.groups())).toordinal()
        if m := _YEAR_MONTH.match(date):
            return dt.date(int(m.group(1)), int(m.group(2) or 1), 1).toordinal()
    except (ValueError, OverflowError):
        return NO_DAY
    for fmt in _TEXT_DATES:
        try:
            return dt.datetime.strptime(date.strip(), fmt).date().toordinal()
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(date).date().toordinal()
    except (ValueError, TypeError, IndexError, OverflowError):
        return NO_DAY
