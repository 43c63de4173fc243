"""Resolve the times live pages write ("10:46 GMT", "10.46am ET", "2 hours ago", ISO strings,
epoch numbers) to UTC, against the page's date and time zone.

Live blogs rarely put a date next to each entry; the page carries it once ("18 January 2024").
A time of day is resolved on that date in the zone the string names (or the page's zone), and
without a page date on the day that makes it most recent without lying in the future.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_tz
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

# Abbreviations that name a fixed offset.
_FIXED: dict[str, float] = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "IST": 5.5, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "WEST": 1, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
    "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10,
    "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11, "ACST": 9.5,
    "AWST": 8, "NZST": 12, "NZDT": 13, "SAST": 2, "WAT": 1, "EAT": 3, "GST": 4, "PKT": 5,
    "MEZ": 1, "MESZ": 2, "HEC": 1, "HAEC": 2,
}  # fmt: skip
# Abbreviations that name a region whose offset depends on the date (daylight saving).
_REGIONAL: dict[str, str] = {
    "ET": "America/New_York", "CT": "America/Chicago", "MT": "America/Denver",
    "PT": "America/Los_Angeles", "UK": "Europe/London", "CEMT": "Europe/Berlin",
    "AET": "Australia/Sydney",
}  # fmt: skip

_MONTH_NAMES = (
    "jan january", "feb february", "mar march", "apr april", "may", "jun june", "jul july",
    "aug august", "sep sept september", "oct october", "nov november", "dec december",
)  # fmt: skip
# The same months in French, German, Spanish and Italian, for pages telex was not tuned to.
_MONTH_NAMES_INTL = (
    "janvier januar jänner enero gennaio", "février fevrier februar febrero febbraio",
    "mars märz maerz marzo", "avril abril aprile", "mai mayo maggio", "juin juni junio giugno",
    "juillet juli julio luglio", "août aout agosto", "septembre septiembre setiembre settembre",
    "octobre oktober octubre ottobre", "novembre noviembre",
    "décembre decembre dezember diciembre dicembre",
)  # fmt: skip
_MONTHS = {name: i + 1 for i, names in enumerate(_MONTH_NAMES) for name in names.split()}
_MONTHS.update({name: i + 1 for i, names in enumerate(_MONTH_NAMES_INTL) for name in names.split()})

# "GMT+3", "UTC-05:30": an offset written after a zone name.
_GMT_OFFSET = r"(?:GMT|UTC)\s?[+-]\d{1,2}(?::?\d\d)?\b"
_ZONE_NAMES = "|".join(sorted((*_FIXED, *_REGIONAL), key=len, reverse=True))
_CLOCK = re.compile(
    r"(?<![\d:.])(?P<h>[01]?\d|2[0-3])[:.h](?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?"
    r"\s*(?P<ampm>[ap]\.?\s?m\.?)?"
    # The zone after the clock, also in brackets: "21:06 (IST)".
    rf"(?:\s*[(\[]?\s*(?P<zone>{_GMT_OFFSET}|(?-i:(?:{_ZONE_NAMES}))\b|[+-]\d\d:?\d\d\b)[)\]]?)?",
    re.IGNORECASE,
)
_CLOCK_AMPM_ONLY = re.compile(
    r"(?<![\d:.])(?P<h>1[0-2]|0?[1-9])\s*(?P<ampm>[ap]\.?\s?m\.?)"
    rf"(?:\s*(?P<zone>(?:{_ZONE_NAMES})\b))?",
    re.IGNORECASE,
)
_RELATIVE = re.compile(
    r"(?P<n>\d+|an?|one)\s*(?P<unit>s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?|"
    r"d|days?|w|weeks?)\s+ago\b",
    re.IGNORECASE,
)
# "il y a 2 heures", "vor 5 Minuten", "hace 3 horas": the word for "ago" comes first.
_RELATIVE_BEFORE = re.compile(
    r"\b(?:il y a|vor|hace)\s+(?P<n>\d+|une?|einer?|un[ao]?)\s*"
    r"(?P<unit>s|sec|secondes?|sek|sekunden?|segundos?|min|mins|minutes?|minuten?|minutos?|"
    r"h|heures?|std|stunden?|horas?|jours?|tagen?|d[ií]as?|semaines?|wochen?|semanas?)\b",
    re.IGNORECASE,
)
_YESTERDAY = re.compile(r"\b(?:yesterday|hier|gestern|ayer|ieri)\b", re.IGNORECASE)


def _unit_seconds(unit: str) -> int | None:
    unit = unit.lower()
    if unit.startswith("mo"):
        return None  # months: too vague to place
    if unit == "s" or unit.startswith(("sec", "sek", "seg")):
        return 1
    if unit == "m" or unit.startswith("min"):
        return 60
    if unit in ("h", "hr", "hrs", "std") or unit.startswith(("hour", "heure", "stund", "hora")):
        return 3600
    if unit == "d" or unit.startswith(("day", "jour", "tag", "día", "dia")):
        return 86400
    if unit == "w" or unit.startswith(("week", "semaine", "woche", "semana")):
        return 604800
    return None


_DATE_DMY = re.compile(
    r"\b(?P<d>[0-3]?\d)(?:st|nd|rd|th|er|\.)?\s+(?:de\s+)?(?P<mon>[^\W\d_]{3,10})\.?,?"
    r"\s+(?:de\s+)?(?P<y>\d{4})\b"
)
_DATE_MDY = re.compile(
    r"\b(?P<mon>[A-Za-z]{3,9})\.?\s+(?P<d>[0-3]?\d)(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b"
)
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<mo>[01]\d)-(?P<d>[0-3]\d)\b")
_EPOCH = re.compile(r"^\s*\d{9,13}(?:\.\d+)?\s*$")


def zone_for(name: str | None) -> tzinfo | None:
    """A tzinfo for an abbreviation ("GMT", "ET"), an offset ("+03:00") or an IANA name."""
    if not name:
        return None
    key = name.strip()
    upper = key.upper()
    if upper in _FIXED:
        return timezone(timedelta(hours=_FIXED[upper]), upper)
    if upper in _REGIONAL:
        return ZoneInfo(_REGIONAL[upper])
    match = re.fullmatch(r"(?:GMT|UTC)\s?([+-])(\d{1,2})(?::?(\d\d))?", upper)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        minutes = int(match.group(2)) * 60 + int(match.group(3) or 0)
        return timezone(sign * timedelta(minutes=minutes)) if minutes < 24 * 60 else None
    match = re.fullmatch(r"([+-])(\d\d):?(\d\d)", key)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(key)
    except (ValueError, KeyError, OSError):
        return None


_DATE_YMD = re.compile(r"\b(?P<y>(?:19|20)\d\d)[/.-](?P<mo>[01]?\d)[/.-](?P<d>[0-3]?\d)\b")
# 27.08.2024, 08/27/2024, 27-08-24: the order of day and month depends on the country.
_DATE_NUMERIC = re.compile(
    r"(?<![\d.:/-])(?P<a>[0-3]?\d)(?P<sep>[./-])(?P<b>[01]?\d)(?P=sep)(?P<y>(?:19|20)?\d\d)(?![\d:])"
)
# 27.08. or 27/08 without a year, only next to a clock ("27.08. 14:05", "14:05 27/08").
_DATE_NO_YEAR = re.compile(
    r"(?<![\d.:/-])(?P<a>[0-3]?\d)(?P<sep>[./-])(?P<b>[01]?\d)\.?(?![\d:/-])"
)
_RFC822 = re.compile(
    r"^(?:[^\W\d_]{2,9}\.?,?\s+)?\d{1,2},?\s+[A-Za-z]{3}[a-z]*\.?,?\s+\d{2,4},?\s+"
    r"\d{1,2}:\d\d(?::\d\d)?\s*(?:[+-]\d{4}|[A-Z]{1,5})$"
)
# Words that may stand next to a time without making it a date ("Posted at", "Uhr").
_FILLER = frozenset(
    {
        "posted", "published", "updated", "update", "last", "at", "on", "by", "the", "am",
        "pm", "a", "m", "p", "um", "uhr", "gegen", "veröffentlicht", "aktualisiert", "zuletzt",
        "stand", "publié", "mis", "à", "jour", "le", "la", "les", "h", "hrs", "heure",
        "aggiornato", "alle", "pubblicato", "ore", "il", "del", "de", "el", "actualizado",
        "publicado", "las", "hora", "bijgewerkt", "gepubliceerd", "om", "uur", "opdaterad",
        "publicerad", "kl", "klo", "time", "today", "heute", "oggi", "hoy", "aujourd", "hui",
        "vandaag", "idag", "i", "dag", "ago",
    }
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+")
_WEEKDAYS = """monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu
    thur thurs fri sat sun montag dienstag mittwoch donnerstag freitag samstag sonntag mo di
    mi do fr sa so lundi mardi mercredi jeudi vendredi samedi dimanche lun mar mer jeu ven sam
    dim lunedì martedì mercoledì giovedì venerdì sabato domenica lunes martes miércoles jueves
    viernes sábado domingo"""  # fmt: skip
# Words that can stand in a written date or next to a time: fillers, months, weekdays.
DATE_WORDS = frozenset(
    {*_FILLER, *_MONTHS, *_WEEKDAYS.split(), "st", "nd", "rd", "th", "er", "de", "um", "à"}
)


def _ymd(y: int, mo: int, d: int) -> date | None:
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def _numeric_date(text: str, day_first: bool, year: int | None) -> date | None:
    match = _DATE_YMD.search(text)
    if match:
        return _ymd(int(match["y"]), int(match["mo"]), int(match["d"]))
    match = _DATE_NUMERIC.search(text)
    if match:
        a, b, y = int(match["a"]), int(match["b"]), int(match["y"])
        y = y + 2000 if y < 100 else y
        dotted = match["sep"] == "."  # 27.08.2024 is day first everywhere
        if a > 12 or dotted or (day_first and b <= 12):
            return _ymd(y, b, a)
        return _ymd(y, a, b)
    if year is not None and _CLOCK.search(text):
        match = _DATE_NO_YEAR.search(_CLOCK.sub(" ", text))
        if match:
            a, b = int(match["a"]), int(match["b"])
            if a > 12 or match["sep"] == "." or day_first:
                return _ymd(year, b, a)
            return _ymd(year, a, b)
    return None


def parse_date(
    text: str,
    *,
    lang: str | None = None,
    day_first: bool = True,
    year: int | None = None,
    thorough: bool = False,
) -> date | None:
    """The first calendar date written in ``text`` ("18 January 2024", "2024-01-18", ...).

    Month names in the common Western languages and numeric dates are read here;
    ``thorough`` hands anything else that looks like a date to dateparser (every language,
    loaded on first use), with ``lang`` as the language hint.
    """
    match = _DATE_ISO.search(text)
    if match:
        found = _ymd(int(match["y"]), int(match["mo"]), int(match["d"]))
        if found is not None:
            return found
    for pattern in (_DATE_DMY, _DATE_MDY):
        for match in pattern.finditer(text):
            month = _MONTHS.get(match["mon"].lower())
            if month is None:
                continue
            found = _ymd(int(match["y"]), month, int(match["d"]))
            if found is not None:
                return found
    found = _numeric_date(text, day_first, year)
    if found is not None or not thorough:
        return found
    if not _dateish(text):
        return None
    parsed = _dateparser_parse(_CLOCK.sub(" ", text), lang, None)
    return parsed.date() if parsed is not None else None


def _dateish(text: str) -> bool:
    """Does ``text`` hold more than a clock and filler words: digits or unknown words?"""
    rest = _CLOCK.sub(" ", text)
    if re.search(r"\d", rest):
        return True
    return any(w.casefold() not in _FILLER for w in _WORD.findall(rest) if len(w) > 2)


def _dateparser_parse(text: str, lang: str | None, base: datetime | None) -> datetime | None:
    """dateparser, the library that reads dates in 200 languages; imported on first use
    (it costs a tenth of a second) and asked only what telex's own rules cannot read."""
    text = " ".join(text.split())
    if not text or len(text) > 80:
        return None
    return _dateparser_cached(text, (lang or "").split("-")[0].lower() or None, base)


@lru_cache(maxsize=4096)
def _dateparser_cached(text: str, lang: str | None, base: datetime | None) -> datetime | None:
    import dateparser  # heavy: only when a page needs it

    settings: dict[str, Any] = {"PREFER_DATES_FROM": "past", "STRICT_PARSING": False}
    if base is not None:
        settings["RELATIVE_BASE"] = base
    languages = [lang] if lang else None
    try:
        found = dateparser.parse(text, languages=languages, settings=settings)
        if found is None and languages:
            found = dateparser.parse(text, settings=settings)
    except Exception:
        return None
    return found if isinstance(found, datetime) else None


def _from_iso(text: str) -> datetime | None:
    candidate = text.strip()
    if not re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d", candidate):
        return None
    try:
        return datetime.fromisoformat(candidate.replace("z", "Z"))
    except ValueError:
        return None


def _from_rfc822(text: str) -> datetime | None:
    """RFC 822 dates as feeds write them, also with a two-digit year or a stray comma."""
    if not _RFC822.match(text):
        return None
    zone = text.rsplit(None, 1)[-1]
    if not (zone[0] in "+-" or zone.upper() in _FIXED or zone.upper() == "UT"):
        return None
    fields = parsedate_tz(re.sub(r"(\d),(\s)", r"\1\2", text))
    if fields is None or fields[9] is None:
        return None
    y, mo, d, h, mi, sec = fields[:6]
    try:
        local = datetime(y, mo, d, h, mi, sec, tzinfo=timezone(timedelta(seconds=fields[9])))
    except ValueError:
        return None
    return local.astimezone(UTC)


def _most_recent(clock: datetime, now: datetime) -> datetime:
    # A bare time of day belongs to the latest day on which it is not in the future
    # (a few minutes of clock skew allowed).
    while clock > now + timedelta(minutes=10):
        clock -= timedelta(days=1)
    return clock


@dataclass(frozen=True)
class Resolved:
    """A time resolved to UTC, and what the string itself said."""

    moment: datetime
    stated_zone: bool  # the string carried its zone (offset, abbreviation, epoch, ISO Z)
    own_date: bool  # the string carried its date (else: the page's date, or the latest day)
    relative: bool = False


_RELATIVE_HINT = re.compile(
    r"\d\s*\S*\s*(?:ago|fa|geleden|sedan|siden|atrás|temu|назад|前)\b|"
    r"\b(?:il y a|vor|hace|há|för|for)\s+\d",
    re.IGNORECASE,
)


def resolve_time(
    raw: str | float | int | None,
    *,
    page_date: date | None = None,
    page_tz: str | tzinfo | None = None,
    now: datetime | None = None,
    lang: str | None = None,
    day_first: bool = True,
) -> Resolved | None:
    """Resolve a time as written on a page to UTC, saying where its zone and date came from.

    ``page_tz`` is used when the string names no zone (UTC when absent too). ``now`` is for
    relative times and for bare times of day on pages without a date. A string that holds a
    date telex cannot read gives ``None``, never today.
    """
    if raw is None or isinstance(raw, bool):
        return None
    now = now or datetime.now(UTC)
    default_tz = page_tz if isinstance(page_tz, tzinfo) else (zone_for(page_tz) or UTC)
    if isinstance(raw, int | float) or (isinstance(raw, str) and _EPOCH.match(raw)):
        return _from_epoch(raw)
    text = str(raw).strip()
    if not text or len(text) > 200:
        return None
    absolute = _from_absolute(text, default_tz)
    if absolute is not None:
        return absolute
    relative, resolved = _from_relative(text, now, lang)
    if relative:
        return resolved
    clock = _CLOCK.search(text) or _CLOCK_AMPM_ONLY.search(text)
    if clock is None:
        only_date = parse_date(text, lang=lang, day_first=day_first, thorough=True)
        if only_date is None:
            return None
        local = datetime(only_date.year, only_date.month, only_date.day, tzinfo=default_tz)
        return Resolved(local.astimezone(UTC), False, True)
    return _from_clock(text, clock, page_date, default_tz, now, lang, day_first)


def _from_epoch(raw: str | float | int) -> Resolved | None:
    """Seconds or milliseconds since the epoch."""
    try:
        value = float(raw)
        if value > 1e11:  # milliseconds
            value /= 1000
        return Resolved(datetime.fromtimestamp(value, UTC), True, True)
    except (OverflowError, OSError, ValueError):
        return None


def _from_absolute(text: str, default_tz: tzinfo) -> Resolved | None:
    """An ISO 8601 or RFC 822 date-time; None when ``text`` is neither."""
    iso = _from_iso(text)
    if iso is not None:
        if iso.tzinfo:
            return Resolved(iso.astimezone(UTC), True, True)
        return Resolved(iso.replace(tzinfo=default_tz).astimezone(UTC), False, True)
    rfc = _from_rfc822(text)
    if rfc is not None:
        return Resolved(rfc, True, True)
    return None


def _from_relative(text: str, now: datetime, lang: str | None) -> tuple[bool, Resolved | None]:
    """Whether ``text`` is a time relative to now, and then its moment (None: unreadable)."""
    if text.lower() in ("just now", "now", "moments ago"):
        return True, Resolved(now.astimezone(UTC), True, True, relative=True)
    rel = _RELATIVE.search(text) or _RELATIVE_BEFORE.search(text)
    if rel:
        n = int(rel["n"]) if rel["n"].isdigit() else 1
        seconds = _unit_seconds(rel["unit"])
        if seconds is None:
            return True, None
        # To the minute: "2 hours ago" is no more precise, and a stable value keeps re-polls
        # from reporting a new time every few seconds.
        moment = (now - timedelta(seconds=n * seconds)).astimezone(UTC)
        return True, Resolved(moment.replace(second=0, microsecond=0), True, True, relative=True)
    if _RELATIVE_HINT.search(text):
        base = now.astimezone(UTC).replace(tzinfo=None)
        found = _dateparser_parse(text, lang, base)
        if found is None:
            return True, None
        moment = found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)
        return True, Resolved(moment.replace(second=0, microsecond=0), True, True, relative=True)
    return False, None


def _from_clock(
    text: str,
    clock: re.Match[str],
    page_date: date | None,
    default_tz: tzinfo,
    now: datetime,
    lang: str | None,
    day_first: bool,
) -> Resolved | None:
    """A time of day, on the date the text writes, else the page's, else the latest day."""
    hour, minute, second = _hms(clock)
    stated = bool(clock["zone"]) and zone_for(clock["zone"]) is not None
    tz = (zone_for(clock["zone"]) if clock["zone"] else None) or default_tz
    year = page_date.year if page_date else now.year
    readable, on_date = _clock_date(text, clock, tz, now, lang, day_first, year)
    if not readable:
        return None
    if on_date is not None:
        try:
            local = datetime(
                on_date.year, on_date.month, on_date.day, hour, minute, second, tzinfo=tz
            )
        except ValueError:
            return None
        return Resolved(local.astimezone(UTC), stated, True)
    if page_date is not None:
        local = datetime(
            page_date.year, page_date.month, page_date.day, hour, minute, second, tzinfo=tz
        )
        return Resolved(local.astimezone(UTC), stated, False)
    today = now.astimezone(tz).date()
    local = datetime(today.year, today.month, today.day, hour, minute, second, tzinfo=tz)
    return Resolved(_most_recent(local, now).astimezone(UTC), stated, False)


def _hms(clock: re.Match[str]) -> tuple[int, int, int]:
    """Hour (24-hour), minute and second of a clock match."""
    hour = int(clock["h"])
    minute = int(clock.groupdict().get("m") or 0)
    second = int(clock.groupdict().get("s") or 0)
    ampm = (clock["ampm"] or "").lower().replace(".", "").replace(" ", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    return hour, minute, second


def _clock_date(
    text: str,
    clock: re.Match[str],
    tz: tzinfo,
    now: datetime,
    lang: str | None,
    day_first: bool,
    year: int,
) -> tuple[bool, date | None]:
    """The date written next to a time of day (None: none written); False when one is
    written but cannot be read."""
    on_date = parse_date(text, lang=lang, day_first=day_first, year=year)
    if on_date is not None:
        return True, on_date
    if _YESTERDAY.search(text):
        return True, (now.astimezone(tz) - timedelta(days=1)).date()
    if _dateish(text[: clock.start()] + " " + text[clock.end() :]):
        # A date is written but not in a form read above: the library, else nothing.
        on_date = parse_date(text, lang=lang, day_first=day_first, year=year, thorough=True)
        return on_date is not None, on_date
    return True, None


def resolve(
    raw: str | float | int | None,
    *,
    page_date: date | None = None,
    page_tz: str | tzinfo | None = None,
    now: datetime | None = None,
    lang: str | None = None,
) -> datetime | None:
    """Resolve a time as written on a page to an aware UTC datetime, or ``None``
    (see :func:`resolve_time`)."""
    found = resolve_time(raw, page_date=page_date, page_tz=page_tz, now=now, lang=lang)
    return found.moment if found is not None else None


def is_relative(raw: str | None) -> bool:
    """True for a time written relative to now ("2 hours ago", "just now")."""
    if not raw:
        return False
    lowered = raw.strip().lower()
    return (
        lowered in ("just now", "now", "moments ago")
        or _RELATIVE.search(raw) is not None
        or _RELATIVE_BEFORE.search(raw) is not None
    )


def iso_utc(moment: datetime) -> str:
    """``2024-01-18T10:46:00Z``: ISO 8601 in UTC, with milliseconds only when present."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_from_ms(ms: int) -> str:
    """Unix milliseconds as UTC ISO 8601."""
    return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))
