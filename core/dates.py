"""Shift DICOM dates (DA, DT, ranges, multi-values) by whole days; cap ages (AS).

Dates move by a whole number of days, so times of day (TM) are unchanged and
the interval between any two dates of the same patient is preserved. A DT keeps
its precision and time-zone suffix; a year-only DT shifts the year's first day
and keeps the year. Values that do not parse raise :class:`ValueError`; the
caller decides what to do (the header step empties them).

Examples
--------
>>> shift_da("20200301", -1)
'20200229'
>>> shift_da("20200101-20200131", -10)
'20191222-20200121'
>>> shift_dt("20200301120000.5+0100", -1)
'20200229120000.5+0100'
>>> shift_dt("2020", -1)
'2019'
>>> cap_age("095Y"), cap_age("045Y"), cap_age("999M")
('090Y', '045Y', '999M')
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache

_DT = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
_DT_RE = re.compile(rf"(?P<dt>{_DT})")
_DT_RANGE_RE = re.compile(rf"(?P<a>{_DT})?-(?P<b>{_DT})?")
_DA_RE = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_AS_RE = re.compile(r"(\d{3})([DWMY])")
# the largest age, per unit, that is still 89 years or less
_AGE_LIMITS = {"Y": 89, "M": 89 * 12 + 11, "W": 4695, "D": 32871}


def shift_date(value: date, days: int) -> date:
    """Return ``value`` moved by ``days``."""
    return value + timedelta(days=days)


def _shift_one_da(text: str, days: int) -> str:
    match = _DA_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a DA value")
    year, month, day = (int(g) for g in match.groups())
    return shift_date(date(year, month, day), days).strftime("%Y%m%d")


@lru_cache(maxsize=8192)  # the dates of a record repeat (study, series, acquisition, content)
def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``, legacy ``YYYY.MM.DD``, or a ``A-B`` range)."""
    text = value.strip()
    if not text:
        return text
    if "-" in text:
        start, _, end = text.partition("-")
        return "-".join(_shift_one_da(p, days) if p.strip() else "" for p in (start, end))
    return _shift_one_da(text, days)


def _shift_one_dt(text: str, days: int) -> str:
    if _DT_RE.fullmatch(text) is None:
        raise ValueError("not a DT value")
    body, zone = text, ""
    for sign in "+-":
        if sign in text[4:]:
            cut = text.index(sign, 4)
            body, zone = text[:cut], text[cut:]
    year = int(body[0:4])
    month = int(body[4:6]) if len(body) >= 6 else 1
    day = int(body[6:8]) if len(body) >= 8 else 1
    shifted = shift_date(date(year, month, day), days).strftime("%Y%m%d")
    precision = min(len(body), 8)
    return shifted[:precision] + body[8:] + zone


@lru_cache(maxsize=8192)
def shift_dt(value: str, days: int) -> str:
    """Shift one DT value or a ``A-B`` DT range, keeping precision and time zone."""
    text = value.strip()
    if not text:
        return text
    if _DT_RE.fullmatch(text):
        return _shift_one_dt(text, days)
    match = _DT_RANGE_RE.fullmatch(text)
    if match is None:
        raise ValueError("not a DT value or range")
    parts = [match.group("a") or "", match.group("b") or ""]
    return "-".join(_shift_one_dt(p, days) if p else "" for p in parts)


def cap_age(value: str) -> str:
    """Return ``090Y`` for ages over 89 years (in any AS unit), else the value unchanged."""
    match = _AS_RE.fullmatch(value.strip())
    if match is None:
        return value
    number, unit = int(match.group(1)), match.group(2)
    return "090Y" if number > _AGE_LIMITS[unit] else value
