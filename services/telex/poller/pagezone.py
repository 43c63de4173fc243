"""Where a page's bare times are read: the zone it writes, its own machine-readable offsets,
else its publisher's country, named by the page's language and its domain.

A country gives a default only: the time string's own zone, the source's configured zone and
the page's offsets all come first (see ``docs/poller.md``). Countries spanning several zones
get the zone most of their newsrooms write in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Country code (ccTLD or the region of a language tag) -> the zone its publishers write in.
COUNTRY_ZONES: dict[str, str] = {
    "uk": "Europe/London", "gb": "Europe/London", "ie": "Europe/Dublin",
    "de": "Europe/Berlin", "at": "Europe/Vienna", "ch": "Europe/Zurich",
    "fr": "Europe/Paris", "be": "Europe/Brussels", "lu": "Europe/Luxembourg",
    "nl": "Europe/Amsterdam", "it": "Europe/Rome", "es": "Europe/Madrid",
    "pt": "Europe/Lisbon", "pl": "Europe/Warsaw", "cz": "Europe/Prague",
    "sk": "Europe/Bratislava", "hu": "Europe/Budapest", "si": "Europe/Ljubljana",
    "hr": "Europe/Zagreb", "rs": "Europe/Belgrade", "se": "Europe/Stockholm",
    "no": "Europe/Oslo", "dk": "Europe/Copenhagen", "fi": "Europe/Helsinki",
    "ee": "Europe/Tallinn", "lv": "Europe/Riga", "lt": "Europe/Vilnius",
    "gr": "Europe/Athens", "ro": "Europe/Bucharest", "bg": "Europe/Sofia",
    "ua": "Europe/Kyiv", "ru": "Europe/Moscow", "tr": "Europe/Istanbul",
    "il": "Asia/Jerusalem", "in": "Asia/Kolkata", "pk": "Asia/Karachi",
    "bd": "Asia/Dhaka", "jp": "Asia/Tokyo", "kr": "Asia/Seoul", "cn": "Asia/Shanghai",
    "hk": "Asia/Hong_Kong", "tw": "Asia/Taipei", "sg": "Asia/Singapore",
    "my": "Asia/Kuala_Lumpur", "ph": "Asia/Manila", "th": "Asia/Bangkok",
    "vn": "Asia/Ho_Chi_Minh", "id": "Asia/Jakarta", "ae": "Asia/Dubai",
    "sa": "Asia/Riyadh", "qa": "Asia/Qatar", "eg": "Africa/Cairo",
    "za": "Africa/Johannesburg", "ng": "Africa/Lagos", "ke": "Africa/Nairobi",
    "au": "Australia/Sydney", "nz": "Pacific/Auckland", "us": "America/New_York",
    "ca": "America/Toronto", "mx": "America/Mexico_City", "br": "America/Sao_Paulo",
    "ar": "America/Argentina/Buenos_Aires", "cl": "America/Santiago",
    "co": "America/Bogota", "pe": "America/Lima", "ve": "America/Caracas",
}  # fmt: skip

# A language spoken mostly in one country names it; English, Spanish, Portuguese, Arabic
# and the like do not (the domain or the language tag's region has to).
LANGUAGE_COUNTRIES: dict[str, str] = {
    "de": "de", "fr": "fr", "it": "it", "nl": "nl", "pl": "pl", "cs": "cz", "sk": "sk",
    "hu": "hu", "sl": "si", "hr": "hr", "sr": "rs", "sv": "se", "nb": "no", "nn": "no",
    "no": "no", "da": "dk", "fi": "fi", "et": "ee", "lv": "lv", "lt": "lt", "el": "gr",
    "ro": "ro", "bg": "bg", "uk": "ua", "ru": "ru", "tr": "tr", "he": "il", "ja": "jp",
    "ko": "kr", "th": "th", "vi": "vn", "id": "id", "ur": "pk", "hi": "in", "bn": "bd",
}  # fmt: skip

# Countries whose publishers write the month before the day in numeric dates.
MONTH_FIRST = frozenset({"us"})


def _cctld(url: str | None) -> str | None:
    host = urlsplit(url or "").hostname or ""
    label = host.rsplit(".", 1)[-1] if "." in host else ""
    return label if len(label) == 2 and label.isalpha() else None


def publisher_country(lang: str | None, urls: list[str | None]) -> str | None:
    """The publisher's country: the page's domain, else its language tag's region, else a
    language spoken mostly in one country."""
    for url in urls:
        code = _cctld(url)
        if code and code in COUNTRY_ZONES:
            return code
    parts = (lang or "").replace("_", "-").lower().split("-")
    if len(parts) > 1 and parts[1] in COUNTRY_ZONES:
        return parts[1]
    return LANGUAGE_COUNTRIES.get(parts[0]) if parts[0] else None


def country_zone(country: str | None) -> str | None:
    """The zone a country's publishers write their times in."""
    return COUNTRY_ZONES.get(country) if country else None
