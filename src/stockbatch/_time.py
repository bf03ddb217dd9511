"""Time conversions, in one place: instants as UTC epoch seconds or microseconds, and
Yahoo-style period strings as days.

Naive datetimes are UTC everywhere; a date is its midnight UTC. Each reader says what else it
takes: :func:`to_us` (the request layer's twin of the compiled ``queue.to_us``) reads an int
as microseconds, :func:`to_epoch` (sources, job windows) reads a number as seconds,
:func:`to_utc_micros` (sink reads) also takes Arrow and pandas timestamps. Bad input is a
``TypeError`` or ``ValueError``; callers name the option it came from.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "EPOCH",
    "known_zone",
    "PERIOD_DAYS",
    "PERIOD_PATTERN",
    "PERIODS",
    "micros_to_datetime",
    "period_days",
    "to_epoch",
    "to_us",
    "to_utc_micros",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DATE = date(1970, 1, 1)
_US = timedelta(microseconds=1)

#: Days covered by Yahoo-style period strings.
PERIOD_DAYS = {
    "1d": 1,
    "5d": 5,
    "1mo": 31,
    "3mo": 92,
    "6mo": 183,
    "1y": 365,
    "2y": 730,
    "5y": 1826,
    "10y": 3652,
}
#: The named periods Yahoo (and yfinance) take.
PERIODS = (*PERIOD_DAYS, "ytd", "max")
#: Every period :func:`period_days` reads: ``<n>d|wk|mo|y``, ``ytd``, ``max``.
PERIOD_PATTERN = re.compile(r"^(\d+)(d|wk|mo|y)$|^(ytd|max)$")
#: The longest period :func:`period_days` accepts (200 years).
MAX_PERIOD_DAYS = 200 * 366


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def to_us(value: Any, name: str = "value") -> int | None:
    """Microseconds since the Unix epoch (UTC) of ``value``, or None.

    Accepts None, an int (already microseconds), an aware or naive datetime (naive = UTC),
    a date (midnight UTC) or an ISO 8601 string.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a date/time, not bool")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is not an ISO 8601 date or date-time: {value!r}") from None
    if isinstance(value, datetime):  # inline (no helper call): the twin's per-request path
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - EPOCH) // _US
    if isinstance(value, date):
        return (value - _EPOCH_DATE).days * 86_400_000_000
    raise TypeError(
        f"{name} must be None, int microseconds, datetime, date or ISO string, "
        f"not {type(value).__name__}"
    )


def to_utc_micros(value: Any) -> int:
    """A datetime / date / ISO string / Arrow or pandas timestamp as UTC microseconds.
    Naive values are taken as UTC; anything else is a ``TypeError``."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if hasattr(value, "as_py") and not isinstance(value, (date, datetime)):  # Arrow scalar
        value = value.as_py()
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(f"cannot read {value!r} as a time")
    return (_aware(value) - EPOCH) // _US


def micros_to_datetime(us: int) -> datetime:
    """The aware UTC datetime of ``us`` microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=us)


def to_epoch(value: Any) -> int | None:
    """Epoch seconds (UTC) of a datetime, date (midnight UTC), ISO string or number."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return int(_aware(value).timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp())
    if hasattr(value, "timestamp"):  # pandas.Timestamp
        return int(value.timestamp())
    raise TypeError(f"cannot read {type(value).__name__} as a time")


def period_days(period: str) -> int:
    """Days of a period string (``5d``, ``1mo``, ``2y``, ``ytd``, ``max``)."""
    if period in PERIOD_DAYS:
        return PERIOD_DAYS[period]
    if period == "max":
        return 365 * 60
    if period == "ytd":
        return datetime.now(timezone.utc).timetuple().tm_yday
    m = PERIOD_PATTERN.match(period)
    if not m or not m.group(1):
        raise ValueError(f"bad period {period!r} (e.g. 5d, 1mo, 1y, ytd, max)")
    n, unit = int(m.group(1)), m.group(2)
    days = n * {"d": 1, "wk": 7, "mo": 31, "y": 366}[unit]
    if days > MAX_PERIOD_DAYS:
        # a date that far back overflows datetime (year 1): say so before any fetch
        raise ValueError(f"period {period!r} is longer than 200 years: use 'max'")
    return days


@functools.lru_cache(maxsize=512)
def known_zone(tz: str) -> bool:
    """Whether Arrow (and so every later step: dating bars, normalize_daily, resample)
    knows the time zone ``tz``. The decoders (both backends) and the sinks' metadata check
    ask it."""
    import pyarrow as pa  # here: the CLI reads this module before anything heavy
    import pyarrow.compute as pc

    if not tz or len(tz) > 64:
        return False
    try:
        # a null array: pa.array() of Python values would make pyarrow import pandas
        pc.assume_timezone(pa.nulls(1, pa.timestamp("us")), tz)
    except (pa.ArrowInvalid, ValueError, TypeError):
        return False
    return True
