"""XML bombs and external entities in feeds (and pages): refused with a clear error, in every
encoding feedparser reads, never expanded, never fetched; the poller keeps polling the rest."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from telex.config import Config
from telex.kafka.scan import partitions_of
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError
from telex.runtime import serve_http, started
from tests.conftest import Broker

LAUGHS = "".join(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10))
RSS_ITEM = "<item><guid>{guid}</guid><title>{title}</title><description>d</description></item>"


def rss(title: str, doctype: str = "", encoding: str = "UTF-8", guid: str = "1") -> str:
    decl = f'<?xml version="1.0" encoding="{encoding}"?>'
    item = RSS_ITEM.format(guid=guid, title=title)
    return f'{decl}{doctype}<rss version="2.0"><channel><title>t</title>{item}</channel></rss>'


def atom(title: str, doctype: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>t</title><id>urn:f</id><updated>2024-01-18T10:46:00Z</updated><entry>"
        f"<id>urn:1</id><title>{title}</title><updated>2024-01-18T10:46:00Z</updated></entry>"
        "</feed>"
    )


def hostile(secret_file: Path, port: int) -> dict[str, bytes]:
    """Name -> document. ``secret_file`` must never be read, ``port`` never connected to."""
    bomb = f'<!DOCTYPE rss [<!ENTITY l0 "lol">{LAUGHS}]>'
    quadratic = '<!DOCTYPE rss [<!ENTITY a "' + "x" * 50_000 + '">]>'
    file_xxe = f'<!DOCTYPE rss [<!ENTITY x SYSTEM "file://{secret_file}">]>'
    http_xxe = f'<!DOCTYPE rss [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/e">]>'
    param_xxe = f'<!DOCTYPE rss [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p; ]>'
    utf16 = rss("&l9;", bomb, "UTF-16")
    return {
        "billion laughs": rss("&l9;", bomb).encode(),
        "billion laughs, utf-16": utf16.encode("utf-16"),
        "billion laughs, utf-16 without bom": utf16.encode("utf-16-le"),
        "billion laughs, utf-16be": rss("&l9;", bomb, "UTF-16BE").encode("utf-16-be"),
        "billion laughs, utf-32": rss("&l9;", bomb, "UTF-32").encode("utf-32"),
        "billion laughs, ebcdic": rss("&l9;", bomb, "cp037").encode("cp037"),
        "billion laughs, utf-7": rss("&l9;", bomb, "UTF-7").encode("utf-7"),
        "billion laughs, atom": atom("&l9;", bomb.replace("rss", "feed")).encode(),
        "quadratic blowup": rss("&a;" * 2000, quadratic).encode(),
        "external entity, file": rss("&x;", file_xxe).encode(),
        "external entity, file, utf-16": rss("&x;", file_xxe, "UTF-16").encode("utf-16"),
        "external entity, http": rss("&x;", http_xxe).encode(),
        "parameter entity, http": rss("t", param_xxe).encode(),
    }


@contextlib.asynccontextmanager
async def counting_listener() -> AsyncIterator[list[int]]:
    """A TCP port on loopback; the list holds one item per connection made to it."""
    hits: list[int] = []

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    hits.append(server.sockets[0].getsockname()[1])  # hits[0]: the port
    try:
        yield hits
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "secret.txt"
    secret = f"TOP-SECRET-{uuid.uuid4().hex}"
    path.write_text(secret)
    return path, secret


async def test_bombs_and_external_entities_are_refused_in_every_encoding(
    secret_file: tuple[Path, str],
) -> None:
    path, secret = secret_file
    async with counting_listener() as hits:
        for name, body in hostile(path, hits[0]).items():
            for content_type in ("application/rss+xml", "application/xml"):
                with pytest.raises(ExtractError, match="refused") as refused:
                    extract_document(body, "http://x.test/", content_type=content_type)
                assert "entit" in str(refused.value), name
            # Sniffed (a wide encoding may read as a page) and as a page: never expanded, never
            # the file's contents.
            for kind in ("auto", "html"):
                try:
                    page = extract_document(body, "http://x.test/", kind=kind)  # type: ignore[arg-type]
                except ExtractError as exc:
                    problem = str(exc)
                else:
                    problem = ""
                    entries = page.entries
                if problem:
                    assert "entit" in problem or "no entries" in problem, (name, problem)
                    continue
                for entry in entries:
                    seen = f"{entry.title}{entry.text}{entry.html}"
                    assert secret not in seen and "lollol" not in seen, name
        assert len(hits) == 1, "an external entity was fetched"
    # The control: ordinary feeds in those encodings still read.
    for encoding, codec in (("UTF-16", "utf-16"), ("ISO-8859-1", "latin-1"), ("cp037", "cp037")):
        page = extract_document(
            rss("Lavrov said \u00e9", encoding=encoding).encode(codec),
            "http://x.test/",
            content_type="application/rss+xml",
        )
        assert [e.title for e in page.entries] == ["Lavrov said \u00e9"], encoding


async def raw_values(config: Config) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, config.topics.raw)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        batch = await consumer.getmany(timeout_ms=2000)
        while batch:
            values += [r.value or b"" for records in batch.values() for r in records]
            batch = await consumer.getmany(timeout_ms=500)
        return values
    finally:
        await consumer.stop()


async def test_running_poller_refuses_them_and_keeps_polling(
    broker: Broker,
    config_factory: Callable[..., Config],
    secret_file: tuple[Path, str],
) -> None:
    path, secret = secret_file
    async with counting_listener() as hits:
        documents = hostile(path, hits[0])
        documents["good"] = rss("Lavrov said", guid="good-1").encode()
        names = {f"d{n}": name for n, name in enumerate(documents)}
        bodies = {f"/{key}": documents[name] for key, name in names.items()}

        async def site(scope: Any, receive: Any, send: Any) -> None:
            body = bodies[scope["path"]]
            headers = [(b"content-type", b"application/rss+xml")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        config = config_factory(broker.bootstrap, TELEX_POLLER_ALLOW_NETWORKS="127.0.0.1/32")
        async with (
            serve_http(site, "127.0.0.1", 0) as base,
            started(config, roles=("poller",), replay=False) as running,
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
        ):
            for key in names:
                created = await http.post("/v1/sources", json={"id": key, "url": f"{base}/{key}"})
                assert created.status_code == 201

            async def statuses() -> dict[str, dict[str, Any]]:
                listed = (await http.get("/v1/sources")).json()["sources"]
                return {s["id"]: s["status"] for s in listed}

            async with asyncio.timeout(30):
                while not all(s and s["polls"] >= 3 for s in (await statuses()).values()):
                    await asyncio.sleep(0.2)
            for key, status in (await statuses()).items():
                if names[key] == "good":
                    assert status["updates_produced"] == 1 and status["last_error"] is None
                else:
                    assert status["updates_produced"] == 0, names[key]
                    assert "entit" in status["last_error"], (names[key], status)
            assert (await http.get("/readyz")).status_code == 200
            values = await raw_values(config)
        assert len(values) == 1 and b"Lavrov said" in values[0]
        assert not any(secret.encode() in v for v in values)
        assert len(hits) == 1, "an external entity was fetched"
