"""``telex webhooks ...``: manage webhook subscriptions through a notifier's HTTP API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import orjson

from telex.config import Config


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``webhooks`` and its subcommands to the ``telex`` parser."""
    wh = sub.add_parser(
        "webhooks",
        parents=[common],
        help="manage webhook subscriptions (create, list, pause, replay, ...)",
        description="Manage webhook subscriptions through the /v1/webhooks API of a running "
        "notifier (telex run or telex notifier).",
    )
    wh.add_argument("--url", default=None, help="telex HTTP URL (default: from [http] config)")
    cmds = wh.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")

    def filter_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--source", action="append", dest="sources", help="source id (repeat)")
        p.add_argument("--term", action="append", dest="terms", help="word or phrase (repeat)")
        p.add_argument("--entity", action="append", dest="entities", help="entity (repeat)")
        p.add_argument("--tag", action="append", dest="tags", help="tag (repeat)")
        p.add_argument("--language", action="append", dest="languages", help="language code")
        p.add_argument("--type", action="append", dest="types", help="created, revised or deleted")
        p.add_argument("--description", default=None)
        p.add_argument("--rate-limit", type=float, default=None, help="deliveries per second")
        p.add_argument("--max-in-flight", type=int, default=None, help="concurrent requests")

    create = cmds.add_parser("create", help="create a subscription (prints its secret once)")
    create.add_argument("target", help="the receiver's URL")
    create.add_argument("--secret", default=None, help="use this whsec_ secret")
    filter_args(create)
    cmds.add_parser("list", help="list subscriptions")
    for name, text in (
        ("get", "show a subscription, its state and health"),
        ("pause", "stop delivering (matching events are kept as dead letters)"),
        ("resume", "deliver again (re-enables a disabled subscription)"),
        ("delete", "delete a subscription"),
        ("test", "send a signed test event now and show the answer"),
    ):
        cmds.add_parser(name, help=text).add_argument("id")
    update = cmds.add_parser("update", help="change a subscription (only what is given)")
    update.add_argument("id")
    update.add_argument("--target", default=None, help="new receiver URL")
    filter_args(update)
    rotate = cmds.add_parser("rotate-secret", help="new secret; the old one signs for a while")
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=float, default=None, help="seconds the old one lasts")
    attempts = cmds.add_parser("attempts", help="recent delivery attempts")
    attempts.add_argument("id")
    attempts.add_argument("--limit", type=int, default=20)
    dead = cmds.add_parser("dead-letters", help="deliveries that gave up")
    dead.add_argument("id")
    replay = cmds.add_parser("replay", help="deliver dead letters again")
    replay.add_argument("id")
    replay.add_argument("--webhook-id", default=None, help="one delivery")
    replay.add_argument("--since-ms", type=int, default=None, help="gave up at or after")
    replay.add_argument("--until-ms", type=int, default=None, help="gave up at or before")


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    flt = {
        name: getattr(args, name)
        for name in ("sources", "terms", "entities", "tags", "languages", "types")
        if getattr(args, name, None)
    }
    if flt:
        body["filter"] = flt
    for name in ("description", "rate_limit", "max_in_flight", "secret"):
        if getattr(args, name, None) is not None:
            body[name] = getattr(args, name)
    return body


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The method, path (under ``/v1/webhooks``) and body of an action."""
    cmd = args.webhooks_command
    sub = f"/{getattr(args, 'id', '')}"
    if cmd == "create":
        return "POST", "", {"url": args.target, **_body(args)}
    if cmd == "update":
        body = _body(args)
        if args.target:
            body["url"] = args.target
        return "PATCH", sub, body
    if cmd == "rotate-secret":
        return (
            "POST",
            sub + "/rotate-secret",
            ({} if args.grace is None else {"grace_seconds": args.grace}),
        )
    if cmd == "replay":
        given = (
            ("webhook_id", args.webhook_id),
            ("since_ms", args.since_ms),
            ("until_ms", args.until_ms),
        )
        return "POST", sub + "/replay", {k: v for k, v in given if v is not None}
    if cmd in ("pause", "resume", "test"):
        return "POST", f"{sub}/{cmd}", None
    if cmd == "attempts":
        return "GET", f"{sub}/attempts?limit={args.limit}", None
    plain = {
        "list": ("GET", ""),
        "get": ("GET", sub),
        "delete": ("DELETE", sub),
        "dead-letters": ("GET", sub + "/dead-letters"),
    }
    method, path = plain[cmd]
    return method, path, None


def run(args: argparse.Namespace, config: Config) -> int:
    """Run one ``telex webhooks`` action; prints JSON, returns the exit status."""
    base = (args.url or f"http://{config.http.host}:{config.http.port}").rstrip("/")
    api = base + "/v1/webhooks"
    method, path, body = _request(args)
    try:
        tokens = config.http.admin_tokens
        headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
        response = httpx.request(
            method, api + path, json=body, headers=headers, timeout=30.0, trust_env=False
        )
    except httpx.HTTPError as exc:
        print(f"telex: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    if response.status_code == 204:
        print("deleted")
        return 0
    try:
        data = response.json()
    except ValueError:
        data = {"error": {"message": response.text}}
    out = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if response.is_success:
        print(out)
        return 0
    print(out, file=sys.stderr)
    return 1
