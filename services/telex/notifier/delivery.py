"""One delivery attempt: a signed POST, redirects followed only to allowed addresses.

The outcome says what the scheduler needs: success, whether to retry (and the receiver's
``Retry-After``), or that the receiver asked never to be called again (410 Gone).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urljoin, urlsplit

import aiohttp

from telex.notifier.signing import sign
from telex.outbound import retry_after_seconds, tls_failure
from telex.ssrf import AddressPolicy, TargetRefused

Outcome = Literal[
    "success", "http_error", "gone", "timeout", "connection_error", "tls_error", "refused"
]
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
USER_AGENT = "telex-webhooks/0.1"
MAX_ERROR_CHARS = 300
MAX_BODY_READ = 64 * 1024


@dataclass(frozen=True)
class Result:
    """What one attempt did."""

    outcome: Outcome
    status: int | None
    latency_s: float
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.outcome == "success"


def headers_for(
    secrets: list[str], webhook_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed at send time)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secrets, webhook_id, ts, body),
    }


async def attempt(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: AddressPolicy,
    max_redirects: int,
) -> Result:
    """POST ``body`` to ``url``; every hop's address is checked before it is called, and
    again at connect time by the client (a :func:`telex.ssrf.guarded_session`)."""
    started = time.perf_counter()
    target = url
    try:
        for _ in range(max_redirects + 1):
            await policy.check_url(target)
            status, response_headers, answer = await _post(client, target, body, headers)
            location = response_headers.get("location")
            if status in _REDIRECTS and location:
                # A webhook is a POST whatever the code: re-send the same signed body.
                target = urljoin(target, location)
                continue
            return _classify(status, response_headers, answer, time.perf_counter() - started)
        return Result(
            "http_error",
            status,
            time.perf_counter() - started,
            f"more than {max_redirects} redirects",
        )
    except TargetRefused as exc:
        where = "redirect target" if target != url else "target"
        return Result("refused", None, time.perf_counter() - started, f"{where} {exc}")
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
        return Result("timeout", None, time.perf_counter() - started, _short(exc, "timed out"))
    except (aiohttp.ClientError, OSError) as exc:
        refused = tls_failure(exc, urlsplit(target).hostname or "")
        if refused is not None:
            return Result("tls_error", None, time.perf_counter() - started, refused)
        return Result("connection_error", None, time.perf_counter() - started, _short(exc))


async def _post(
    client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Mapping[str, str], bytes]:
    """POST; the status, the headers and at most ``MAX_BODY_READ`` bytes of the answer.

    Reading a short answer to its end lets the connection go back to the pool; a receiver
    that streams megabytes is cut off instead of read.
    """
    async with client.post(url, data=body, headers=headers, allow_redirects=False) as response:
        answer = b""
        while len(answer) <= MAX_BODY_READ:
            chunk = await response.content.read(MAX_BODY_READ + 1 - len(answer))
            if not chunk:
                break
            answer += chunk
        # Left unread, the rest is never read: aiohttp closes such a connection on release.
        return response.status, response.headers, answer


def _classify(status: int, headers: Mapping[str, str], answer: bytes, latency: float) -> Result:
    if 200 <= status < 300:
        return Result("success", status, latency)
    text = " ".join(answer[:200].decode("utf-8", "replace").split())
    detail = f"HTTP {status}" + (f": {text}" if text else "")
    if status == 410:
        return Result("gone", status, latency, detail)
    retry_after = None
    if status in (429, 503):
        retry_after = retry_after_seconds(headers.get("retry-after"))
    return Result("http_error", status, latency, detail[:MAX_ERROR_CHARS], retry_after)


def _short(exc: BaseException, fallback: str = "") -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (text or fallback)[:MAX_ERROR_CHARS]
