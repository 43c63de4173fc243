"""The ``telex`` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from telex import __version__

if TYPE_CHECKING:
    from telex.config import Config

# `telex extract` must start fast: the configuration (pydantic), logging and the services are
# imported by the commands that need them, not here.


def _parser(extract_only: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telex",
        description="Live news pages in, a clean real-time wire out (Kafka, WebSocket, webhooks).",
    )
    parser.add_argument("--version", action="version", version=f"telex {__version__}")
    if extract_only:
        # `telex extract ...`: only its own parser, so that nothing else is imported.
        _extract_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
        return parser
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config file (or TELEX_CONFIG)")
    common.add_argument(
        "--bootstrap",
        metavar="SERVERS",
        help="Kafka bootstrap servers (or TELEX_KAFKA_BOOTSTRAP); none starts the embedded broker",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run everything in one process: broker, replay, poller, processor, gateway, notifier",
        description="Run the whole pipeline in one process. Without --bootstrap it starts the "
        "embedded broker and replays the seed live blog.",
    )
    run.add_argument("--no-replay", action="store_true", help="do not start the replay source")
    for role, text in (
        ("poller", "poll the configured sources into the raw topic"),
        ("processor", "normalise and dedup raw updates onto the wire"),
        ("gateway", "serve the wire over WebSocket, and the dashboard"),
        ("notifier", "deliver matching updates as signed webhooks, with retries"),
    ):
        sub.add_parser(role, parents=[common], help=text, description=text.capitalize() + ".")
    sub.add_parser(
        "broker",
        parents=[common],
        help="run only the embedded Kafka broker and print its address",
        description="Run the embedded in-memory broker (Tansu) until interrupted.",
    )
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="serve the seed live blog as a growing live page",
        description="Serve the seed live blog on loopback, revealing one entry every "
        "TELEX_REPLAY_INTERVAL seconds.",
    )
    replay.add_argument("--port", type=int, default=None, help="port (default: [replay] port)")
    from telex.notifier.cli import add_parser as add_webhooks_parser

    add_webhooks_parser(sub, common)
    tail = sub.add_parser(
        "tail",
        parents=[common],
        help="print the live wire in the terminal",
        description="Connect to a gateway's /v1/stream and print one line per event.",
    )
    tail.add_argument("--url", default=None, help="gateway URL (default: from [http] config)")
    tail.add_argument("--json", action="store_true", help="print whole events as JSON lines")
    reference = sub.add_parser(
        "reference",
        help="print a reference document generated from the code (metrics, config)",
        description="Print docs/metrics.md or docs/configuration.md as generated from the code.",
    )
    reference.add_argument("kind", choices=["metrics", "config"])
    _poller_commands(sub, common)
    return parser


# Poller: `telex extract` and `telex sources ...`.
def _poller_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    _extract_parser(sub)
    _sources_parser(sub)


def _extract_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    extract = sub.add_parser(
        "extract",
        help="print the entries telex extracts from a page or feed (a file or a URL)",
        description="Run the poller's extraction on one page or feed and print one JSON object "
        "per entry, in page order. Exits 1 when nothing can be extracted.",
    )
    extract.add_argument("target", metavar="PATH_OR_URL", help="a file, a URL, or - for stdin")
    extract.add_argument(
        "--format",
        default="auto",
        choices=["auto", "html", "rss", "atom", "feed", "jsonfeed", "json"],
        help="document format (default: detect)",
    )
    extract.add_argument("--timezone", help="zone of times written without one, e.g. Europe/London")
    extract.add_argument(
        "--mapping",
        metavar="JSON",
        help='JMESPath mapping for a JSON API, e.g. \'{"items": "data.posts", "id": "id"}\'',
    )
    extract.add_argument(
        "--selectors",
        metavar="JSON",
        help='CSS/XPath selectors for an HTML page, e.g. \'{"entry": "article.post"}\'',
    )
    extract.add_argument(
        "--base-url", help="URL the file was served at (for links and anchors; default file://)"
    )
    extract.add_argument(
        "--now",
        metavar="ISO_TIME",
        help="when the page was fetched, for relative times like '5 min ago' "
        "(default: a URL's Date header, a file's modification time)",
    )


def _sources_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sources = sub.add_parser(
        "sources",
        help="list, show, add, update or remove polled sources (through the HTTP API)",
        description="Manage sources through a running telex's /v1/sources.",
    )
    sources.add_argument("--url", default=None, help="telex URL (default: from [http] config)")
    sources.add_argument("--config", metavar="FILE", help="TOML config file (or TELEX_CONFIG)")
    actions = sources.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="every source, with the status of those polled there")
    get = actions.add_parser("get", help="one source and its status")
    get.add_argument("id")
    for name, text in (("add", "add a source"), ("update", "change fields of a source")):
        action = actions.add_parser(name, help=text)
        action.add_argument("id")
        action.add_argument("source_url", nargs="?" if name == "update" else None, metavar="URL")
        action.add_argument(
            "--kind", choices=["auto", "html", "feed", "rss", "atom", "jsonfeed", "json"]
        )
        action.add_argument("--interval", type=float, help="seconds between polls")
        action.add_argument("--timezone", help="zone of times written without one")
        action.add_argument("--mapping", metavar="JSON", help="JMESPath mapping (JSON object)")
        action.add_argument("--selectors", metavar="JSON", help="HTML selectors (JSON object)")
        action.add_argument("--enabled", choices=["true", "false"], help="poll it or not")
    remove = actions.add_parser("remove", help="stop polling a source and forget it")
    remove.add_argument("id")


def _config(args: argparse.Namespace) -> Config:
    from telex.config import load
    from telex.config_checks import CONFIG_CHECKS

    environ = dict(os.environ)
    if getattr(args, "bootstrap", None):
        environ["TELEX_KAFKA_BOOTSTRAP"] = args.bootstrap
    return load(getattr(args, "config", None), environ, CONFIG_CHECKS)


async def _broker(config: Config) -> None:
    import asyncio

    from telex.kafka.embedded import EmbeddedBroker
    from telex.runtime import install_stop_handlers

    stop = asyncio.Event()
    install_stop_handlers(stop)
    broker = EmbeddedBroker()
    await broker.start(config.kafka.embedded_start_timeout_s)
    print(f"embedded Kafka broker on {broker.bootstrap} (in memory); Ctrl-C to stop", flush=True)
    try:
        await stop.wait()
    finally:
        await broker.stop()


async def _replay(config: Config, port: int | None) -> None:
    import asyncio

    from telex.replay.server import PAGE_PATH, create_app
    from telex.runtime import install_stop_handlers, serve_http

    stop = asyncio.Event()
    install_stop_handlers(stop)
    app = create_app(config.replay.interval)
    async with serve_http(
        app, config.replay.host, config.replay.port if port is None else port
    ) as url:
        print(f"replaying the seed live blog at {url}{PAGE_PATH}", flush=True)
        await stop.wait()


async def _tail(url: str, as_json: bool) -> None:
    import websockets

    ws_url = url.replace("http", "ws", 1).rstrip("/") + "/v1/stream"
    async for connection in websockets.connect(ws_url):
        try:
            async for message in connection:
                frame = orjson.loads(message)
                if frame.get("type") != "event":
                    print(f"# {message!s}", file=sys.stderr)
                    continue
                event = frame["event"]
                if as_json:
                    print(orjson.dumps(event).decode(), flush=True)
                    continue
                data = event["data"]
                text = " ".join((data.get("title") or data.get("text") or "").split())
                print(
                    f"{data.get('published') or '-'}  {data['source_id']}  {text[:100]}", flush=True
                )
        except websockets.ConnectionClosed:
            print("# connection closed, reconnecting", file=sys.stderr)
            continue


def _run_command(args: argparse.Namespace, config: Config) -> int:
    """Run a command that needs the configuration; its exit status."""
    from telex.eventloop import run
    from telex.runtime import ROLES, serve_until_stopped

    if args.command == "run":
        run(serve_until_stopped(config, ROLES, replay=not args.no_replay))
    elif args.command in ROLES:
        run(serve_until_stopped(config, (args.command,), replay=False))
    elif args.command == "broker":
        run(_broker(config))
    elif args.command == "replay":
        run(_replay(config, args.port))
    elif args.command == "sources":
        from telex.poller.cli import sources_command

        url = args.url or f"http://{config.http.host}:{config.http.port}"
        tokens = config.http.admin_tokens
        return sources_command(args, url, tokens[0] if tokens else None)
    elif args.command == "tail":
        url = args.url or f"http://{config.http.host}:{config.http.port}"
        run(_tail(url, args.json))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``telex`` console script."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = _parser(extract_only=bool(given) and given[0] == "extract").parse_args(given)
    if args.command == "reference":
        from telex.reference import config_markdown, metrics_markdown

        print(metrics_markdown() if args.kind == "metrics" else config_markdown(), end="")
        return 0
    if args.command == "extract":
        from telex.poller.cli import extract_command

        return extract_command(args)
    from telex.config import ConfigError
    from telex.log import configure

    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"telex: {exc}", file=sys.stderr)
        return 2
    configure(config.log.level, config.log.format)
    if args.command == "webhooks":
        # Before the imports below: a CLI call to the API need not load Kafka and the servers.
        from telex.notifier.cli import run as run_webhooks

        return run_webhooks(args, config)

    from aiokafka.errors import KafkaError

    from telex.kafka import BrokerError

    try:
        return _run_command(args, config)
    except BrokerError as exc:
        print(f"telex: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        # A start-up failure the checks before did not foresee: still one line, no traceback.
        print(f"telex: Kafka refused the start: {exc!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass  # Ctrl-C during start-up, before the stop handlers were installed.
    except BrokenPipeError:
        # `telex tail | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not complain again (the recipe from the Python docs on SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
