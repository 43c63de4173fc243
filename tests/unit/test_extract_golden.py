"""The regression gate: extraction of every fixture in tests/data/poller must not change.

Each fixture's output is kept in tests/data/poller/golden/<fixture>.jsonl. When a change to
the extractor is meant to change it, regenerate with

    TELEX_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_extract_golden.py

and review the diff like code.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError

DATA = Path(__file__).resolve().parent.parent / "data" / "poller"
GOLDEN = DATA / "golden"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FIXTURES = sorted(p.name for p in DATA.iterdir() if p.is_file())


def extraction(name: str) -> str:
    try:
        page = extract_document(
            (DATA / name).read_bytes(), f"https://fixtures.test/{name}", now=NOW
        )
    except ExtractError as exc:
        return orjson.dumps({"error": str(exc)}).decode() + "\n"
    lines = [
        orjson.dumps(
            {
                "id": e.entry_id,
                "published": e.published,
                "published_zone": e.zone_from,
                "published_tz": e.zone,
                "time_raw": e.time_raw,
                "title": e.title,
                "text": e.text,
                "url": e.url,
                "html": e.html,
            }
        ).decode()
        for e in page.entries
    ]
    lines += [orjson.dumps({"warning": w}).decode() for w in page.warnings]
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("name", FIXTURES)
def test_extraction_of_the_fixture_is_unchanged(name: str) -> None:
    got = extraction(name)
    path = GOLDEN / f"{name}.jsonl"
    if os.environ.get("TELEX_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"no golden output for {name}: run with TELEX_UPDATE_GOLDEN=1"
    assert got == path.read_text(encoding="utf-8"), (
        f"extraction of {name} changed; if intended, regenerate (see this module's docstring)"
    )


def test_every_golden_file_has_its_fixture() -> None:
    orphans = {p.name.removesuffix(".jsonl") for p in GOLDEN.glob("*.jsonl")} - set(FIXTURES)
    assert not orphans
