"""FHIR date, dateTime and instant values as closed UTC ranges.

Search on dates is range arithmetic (FHIR R4 3.1.1.4.2): `2024` means the whole year. Every
value is normalised to naive UTC datetimes so that SQLite and PostgreSQL compare them alike.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

MIN_DT = datetime(1, 1, 1)
MAX_DT = datetime(9999, 12, 31, 23, 59, 59, 999999)

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2})(:(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateFormatError(ValueError):
    pass


def parse_range(value: str) -> tuple[datetime, datetime]:
    """Return (low, high) naive-UTC bounds of a FHIR date/dateTime/instant, inclusive."""
    m = _DATE_RE.match(value.strip())
    if not m:
        raise DateFormatError(f"'{value}' is not a valid FHIR date or dateTime")
    y = int(m["y"])
    try:
        if m["m"] is None:
            low = datetime(y, 1, 1)
            high = datetime(y, 12, 31, 23, 59, 59, 999999)
            return low, high
        mo = int(m["m"])
        if m["d"] is None:
            last = calendar.monthrange(y, mo)[1]
            return datetime(y, mo, 1), datetime(y, mo, last, 23, 59, 59, 999999)
        d = int(m["d"])
        if m["H"] is None:
            return datetime(y, mo, d), datetime(y, mo, d, 23, 59, 59, 999999)
        hh = int(m["H"])
        mi = int(m["M"] or 0)
        if m["M"] is None:
            low = datetime(y, mo, d, hh)
            span = timedelta(hours=1)
        elif m["S"] is None:
            low = datetime(y, mo, d, hh, mi)
            span = timedelta(minutes=1)
        else:
            ss = int(m["S"])
            frac = m["f"]
            micro = int((frac[1:] + "000000")[:6]) if frac else 0
            low = datetime(y, mo, d, hh, mi, ss, micro)
            if frac:
                digits = min(len(frac) - 1, 6)
                span = timedelta(microseconds=10 ** (6 - digits))
            else:
                span = timedelta(seconds=1)
    except ValueError as exc:
        raise DateFormatError(f"'{value}' is not a valid date: {exc}") from exc
    tz = m["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        low = low - sign * offset
    return low, low + span - timedelta(microseconds=1)


def period_bounds(period: Any) -> tuple[datetime, datetime]:
    """A FHIR Period as [start, end], open ends unbounded; one that cannot be read covers
    nothing (start after end), so a rule bound to it never holds by accident."""
    if not isinstance(period, dict):
        return MAX_DT, MIN_DT
    try:
        return (parse_range(period["start"])[0] if period.get("start") else MIN_DT,
                parse_range(period["end"])[1] if period.get("end") else MAX_DT)
    except (DateFormatError, TypeError):
        return MAX_DT, MIN_DT


def parse_instant(value: str) -> datetime:
    """The start of a date value's range (for `_since`, `_at`, If-Modified-Since style inputs)."""
    return parse_range(value)[0]


def utcnow() -> datetime:
    """Naive UTC now, truncated to milliseconds (what we publish in meta.lastUpdated)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def to_instant(dt: datetime) -> str:
    """Naive UTC datetime to a FHIR instant string with millisecond precision."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_http_date(dt: datetime) -> str:
    return dt.replace(tzinfo=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def from_http_date(value: str) -> datetime | None:
    from email.utils import parsedate_to_datetime

    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
