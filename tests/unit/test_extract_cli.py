"""``telex extract`` as a user runs it: relative times against --now or the file's mtime,
warnings on stderr, a quiet exit on a closed pipe, and a start that imports only extraction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from telex.testing import TELEX

DATA = Path(__file__).resolve().parent.parent / "data" / "poller"


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TELEX, "extract", *args], capture_output=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]


def test_relative_times_count_back_from_now_or_from_the_file_mtime(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes((DATA / "relative-bst.html").read_bytes())
    done = run("--now", "2026-06-01T12:00:00Z", str(page))
    first = orjson.loads(done.stdout.splitlines()[0])
    assert first["published"] == "2026-06-01T10:00:00Z" and first["time_raw"] == "2h ago"
    os.utime(page, (1700000000, 1700000000))  # 2023-11-14T22:13:20Z
    first = orjson.loads(run(str(page)).stdout.splitlines()[0])
    assert first["published"] == "2023-11-14T20:13:00Z"


def test_each_entry_says_how_its_zone_was_decided() -> None:
    done = run(str(DATA / "german-ticker.html"), "--now", "2024-08-27T14:00:00Z")
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(e["published_zone"], e["zone"]) for e in lines][1] == ("country", "Europe/Berlin")


def test_a_closed_pipe_ends_quietly() -> None:
    big = "".join(
        f'<div class="p"><span>{h:02d}:{m:02d}</span><p>Entry {h} {m} has words.</p></div>'
        for h in range(23, -1, -1)
        for m in range(59, -1, -1)
    )
    html = f"<html><body><h1>L</h1><p>18 January 2024</p><div>{big}</div></body></html>"
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.Popen(
        [*TELEX, "extract", "-"], stdin=subprocess.PIPE, stdout=reader.stdin, stderr=subprocess.PIPE
    )
    assert reader.stdin is not None
    reader.stdin.close()
    _, err = writer.communicate(html.encode(), timeout=60)
    reader.wait(timeout=10)
    assert writer.returncode == 0, err
    assert b"Traceback" not in err and b"Broken pipe" not in err


def test_extract_imports_only_what_extraction_needs() -> None:
    code = (
        "import sys; from telex.cli import main; rc = main(['extract', sys.argv[1]]);"
        "heavy = {'pydantic', 'httpx', 'aiokafka', 'fastapi', 'asyncio', 'feedparser',"
        " 'jmespath', 'telex.config', 'dateparser'} & set(sys.modules);"
        "print(sorted(heavy), file=sys.stderr); sys.exit(rc or bool(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(DATA / "html-time-datetime.html")],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
