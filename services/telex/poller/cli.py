"""``telex extract`` (try the extractor on one page) and ``telex sources ...`` (manage sources)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from telex.config import HtmlSelectors, JsonMapping, PollerConfig
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError

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


def _read(target: str) -> tuple[bytes, str, str | None]:
    """The document's bytes, its URL and its Content-Type."""
    if target.startswith(("http://", "https://")):
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
            return b"".join(chunks), str(response.url), response.headers.get("content-type")
    path = Path(target)
    try:
        return path.read_bytes(), path.resolve().as_uri(), None
    except OSError as exc:
        raise ExtractError(f"cannot read {target}: {exc.strerror or exc}") from None


def extract_command(args: argparse.Namespace) -> int:
    """Print one JSON object per entry of a page or feed; 1 when nothing is extracted."""
    try:
        raw_mapping = _json_option(args.mapping, "mapping")
        raw_selectors = _json_option(args.selectors, "selectors")
        mapping = JsonMapping.model_validate(raw_mapping) if raw_mapping else None
        selectors = HtmlSelectors.model_validate(raw_selectors) if raw_selectors else None
    except (ValueError, ValidationError) as exc:
        return _fail(str(exc), 2)
    try:
        body, url, content_type = _read(args.target)
        page = extract_document(
            body,
            args.base_url or url,
            kind=_FORMATS.get(args.format, args.format),
            content_type=content_type,
            tz=args.timezone,
            selectors=selectors,
            mapping=mapping,
        )
    except (ExtractError, httpx.HTTPError) as exc:
        return _fail(f"cannot extract {args.target}: {exc}")
    if not page.entries:
        return _fail(f"no entries found in {args.target} (read as {page.kind})")
    for entry in page.entries:
        line = {
            "id": entry.entry_id,
            "published": entry.published,
            "time_raw": entry.time_raw,
            "title": entry.title,
            "text": entry.text,
            "url": entry.url,
        }
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()
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
