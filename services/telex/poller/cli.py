"""``telex extract`` (try the extractor on one page) and ``telex sources ...`` (manage sources).

``telex extract`` imports only what extraction needs: HTTP, pydantic and the configuration come
in when a URL, a mapping or selectors ask for them.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from telex.poller.extract import ExtractError

if TYPE_CHECKING:
    import httpx

_FORMATS = {"rss": "feed", "atom": "feed"}


def _fail(message: str, code: int = 1) -> int:
    print(f"telex: {message}", file=sys.stderr)
    return code


def _json_option(text: str | None, name: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--{name} must be a JSON object")
    return value


def _read(target: str) -> tuple[bytes, str, str | None, datetime | None]:
    """The document's bytes, its URL, its Content-Type and when it was fetched."""
    if target.startswith(("http://", "https://")):
        import httpx

        from telex.config import PollerConfig

        limit = PollerConfig().max_body_bytes
        headers = {"User-Agent": PollerConfig().user_agent}
        with (
            httpx.Client(follow_redirects=True, timeout=20, headers=headers) as client,
            client.stream("GET", target) as response,
        ):
            if response.status_code >= 400:
                raise ExtractError(f"{target} answered HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ExtractError(f"body larger than {limit} bytes")
                chunks.append(chunk)
            return (
                b"".join(chunks),
                str(response.url),
                response.headers.get("content-type"),
                _http_date(response.headers.get("date")),
            )
    if target == "-":
        return sys.stdin.buffer.read(), "file:///dev/stdin", None, None
    path = Path(target)
    try:
        body = path.read_bytes()
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        raise ExtractError(f"cannot read {target}: {exc.strerror or exc}") from None
    return body, path.resolve().as_uri(), None, mtime


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _now_option(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--now is not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def extract_command(args: argparse.Namespace) -> int:
    """Print one JSON object per entry of a page or feed; 1 when nothing is extracted."""
    try:
        raw_mapping = _json_option(args.mapping, "mapping")
        raw_selectors = _json_option(args.selectors, "selectors")
        now = _now_option(getattr(args, "now", None))
        mapping = selectors = None
        if raw_mapping or raw_selectors:
            from pydantic import ValidationError

            from telex.config import Checks, HtmlSelectors, JsonMapping
            from telex.poller.selectors import compile_selector

            try:
                mapping = JsonMapping.model_validate(raw_mapping) if raw_mapping else None
                selectors = (
                    HtmlSelectors.model_validate(
                        raw_selectors, context=Checks(selector=compile_selector)
                    )
                    if raw_selectors
                    else None
                )
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
    except ValueError as exc:
        return _fail(str(exc), 2)
    from telex.poller.documents import extract_document

    try:
        body, url, content_type, fetched_at = _read(args.target)
        page = extract_document(
            body,
            args.base_url or url,
            kind=_FORMATS.get(args.format, args.format),
            content_type=content_type,
            tz=args.timezone,
            selectors=selectors,
            mapping=mapping,
            now=now or fetched_at,
        )
    except ExtractError as exc:
        return _fail(f"cannot extract {args.target}: {exc}")
    except Exception as exc:
        if type(exc).__module__.startswith("httpx"):
            return _fail(f"cannot extract {args.target}: {exc}")
        raise
    for warning in page.warnings:
        print(f"telex: warning: {warning}", file=sys.stderr)
    if not page.entries:
        return _fail(f"no entries found in {args.target} (read as {page.kind})")
    try:
        for entry in page.entries:
            line = {
                "id": entry.entry_id,
                "published": entry.published,
                "published_zone": entry.zone_from,
                "zone": entry.zone,
                "time_raw": entry.time_raw,
                "title": entry.title,
                "text": entry.text,
                "url": entry.url,
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `telex extract page.html | head`: the reader has all it wanted. Point stdout at
        # /dev/null so the interpreter's final flush does not complain (Python's SIGPIPE
        # recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _source_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.source_url:
        body["url"] = args.source_url
    for key in ("kind", "interval", "timezone"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.enabled is not None:
        body["enabled"] = args.enabled == "true"
    for key in ("mapping", "selectors"):
        value = _json_option(getattr(args, key), key)
        if value is not None:
            body[key] = value
    return body


def _print_response(response: httpx.Response) -> int:
    if response.status_code == 204:
        return 0
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text}
    if response.status_code >= 400:
        message = data.get("error", f"HTTP {response.status_code}")
        for err in data.get("errors", []):
            message += f"\n  {err['field']}: {err['message']}"
        return _fail(message)
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def sources_command(args: argparse.Namespace, base_url: str, token: str | None = None) -> int:
    """Run one ``telex sources`` action against a running telex's API."""
    import httpx

    api = base_url.rstrip("/") + "/v1/sources"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=30, headers=headers) as client:
            if args.action == "list":
                response = client.get(api)
                if response.status_code != 200:
                    return _print_response(response)
                for source in response.json()["sources"]:
                    status = source.get("status") or {}
                    state = status.get("state", "-")
                    if status.get("last_error"):
                        state += f" ({status['last_error']})"
                    print(
                        f"{source['id']:<24} {source.get('kind', 'auto'):<8} {state:<10} "
                        f"{source['url']}"
                    )
                return 0
            if args.action == "get":
                return _print_response(client.get(f"{api}/{args.id}"))
            if args.action == "remove":
                return _print_response(client.delete(f"{api}/{args.id}"))
            body = _source_body(args)
            if args.action == "add":
                return _print_response(client.post(api, json={"id": args.id, **body}))
            return _print_response(client.patch(f"{api}/{args.id}", json=body))
    except ValueError as exc:
        return _fail(str(exc), 2)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach telex at {base_url}: {exc}")
