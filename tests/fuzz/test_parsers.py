"""Hostile input at every parser on the edge: any input gives a result or the parser's own
clear error, never another exception (which would be a crash or a stuck partition)."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telex.config import ConfigError, load
from telex.events import PoisonRecord, decode_raw
from telex.filters import Filter, FilterError
from telex.gateway.cursor import CursorError, decode_cursor, encode_cursor
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError
from telex.timeparse import resolve

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2024, 7, 10, 15, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

time_like = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.digits + ":.apmAPMGTUCESBT +-hago ", max_size=30),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
)


@FAST
@given(raw=time_like, page_date=st.none() | st.dates(), tz=st.none() | st.text(max_size=12))
def test_time_resolution_never_raises(raw: object, page_date: date | None, tz: str | None) -> None:
    moment = resolve(raw, page_date=page_date, page_tz=tz, now=NOW)  # type: ignore[arg-type]
    assert moment is None or moment.tzinfo is not None


PIECES = [
    "<html>", "<body>", "<div>", "</div>", "<p>", "</p>", "<time datetime='x'>",
    "10:46 GMT", "2 hours ago", "<script type='application/ld+json'>", "</script>",
    '{"@type":"LiveBlogPosting","liveBlogUpdate":[{"articleBody":"x"}]}', "<article>",
    "<rss><channel><item><title>t</title></item></channel></rss>",
    '<?xml version="1.0"?>', "<!DOCTYPE x [<!ENTITY a 'b'>]>", "&a;", "\x00", "\ufffd",
    '{"version":"https://jsonfeed.org/version/1","items":[{"id":1}]}', "<h1>", "Lavrov",
]  # fmt: skip
markup = st.lists(st.sampled_from(PIECES) | st.text(max_size=30), max_size=40).map("".join)


@FAST
@given(body=st.one_of(markup, st.text(max_size=200)).map(str.encode) | st.binary(max_size=300))
def test_document_extraction_gives_entries_or_a_clear_error(body: bytes) -> None:
    try:
        page = extract_document(body, "https://example.com/live", now=NOW)
    except ExtractError as exc:
        assert str(exc)
        return
    for entry in page.entries:
        assert entry.entry_id
        assert isinstance(entry.text, str)


@FAST
@given(value=st.none() | st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_raw_record_decoding_gives_a_record_or_a_reason(value: bytes | None) -> None:
    try:
        decode_raw(value)
    except PoisonRecord as exc:
        assert exc.reason


@FAST
@given(data=json_values)
def test_filters_validate_or_name_the_problem(data: object) -> None:
    try:
        matcher = Filter.parse(data).compile()
    except FilterError as exc:
        assert str(exc).startswith(("invalid filter", "filter must be"))
        return
    assert matcher.matches({"type": "telex.update.created", "data": {}}) in (True, False)


@FAST
@given(token=st.text(max_size=60) | st.binary(max_size=40).map(lambda b: b.hex()))
def test_cursor_tokens_decode_or_are_refused(token: str) -> None:
    try:
        positions = decode_cursor(token)
    except CursorError as exc:
        assert str(exc)
        return
    assert all(p >= 0 and o >= 0 for p, o in positions.items())
    assert decode_cursor(encode_cursor(positions)) == positions


@FAST
@given(text=st.text(max_size=200))
def test_config_files_load_or_explain(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = tmp_path_factory.mktemp("cfg") / "telex.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load(path, {})
    except ConfigError as exc:
        assert str(exc)
