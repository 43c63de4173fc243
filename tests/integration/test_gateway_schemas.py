"""The AsyncAPI document of the gateway, and real frames checked against the JSON Schemas it
references."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import websockets
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from telex.config import Config
from telex.gateway.cursor import encode_cursor
from tests.conftest import Broker

from ..conftest import ROOT
from .gateway_helpers import gateway, produce, producer, recv, recv_type, wait_for, wire_event

FRAMES_ID = "https://telex.dev/schemas/gateway-frames.schema.json"


@pytest.fixture(scope="module")
def frames() -> Callable[[dict[str, Any], str], None]:
    schemas = [
        orjson.loads((ROOT / "schemas" / name).read_bytes())
        for name in ("gateway-frames.schema.json", "wire-event.schema.json")
    ]
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas
    )
    Draft202012Validator.check_schema(schemas[0])
    whole = Draft202012Validator(schemas[0], registry=registry)

    def check(frame: dict[str, Any], kind: str) -> None:
        whole.validate(frame)  # exactly one of the frame kinds
        one = Draft202012Validator(
            {"$ref": f"{FRAMES_ID}#/$defs/{kind}"},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        one.validate(frame)

    return check


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_asyncapi_document_is_complete_and_its_examples_validate(
    frames: Callable[[dict[str, Any], str], None],
) -> None:
    doc = yaml.safe_load((ROOT / "schemas" / "gateway.asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {c["address"] for c in doc["channels"].values()} == {"/v1/stream", "/v1/events"}
    defs = orjson.loads((ROOT / "schemas" / "gateway-frames.schema.json").read_bytes())["$defs"]
    external = internal = 0
    for ref in refs(doc):
        if ref.startswith("./gateway-frames.schema.json#/$defs/"):
            assert ref.rsplit("/", 1)[1] in defs, ref
            external += 1
        else:
            node: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                node = node[part]
            internal += 1
    assert external >= 12 and internal > 20
    for name, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            frames(example["payload"], name)


async def test_real_frames_validate(
    broker: Broker,
    config_factory: Callable[..., Config],
    frames: Callable[[dict[str, Any], str], None],
) -> None:
    base = config_factory(broker.bootstrap)
    config = base.model_copy(
        update={
            "gateway": base.gateway.model_copy(
                update={"heartbeat_interval": 0.3, "max_replay_events": 0}
            )
        }
    )
    async with gateway(config) as (_, gw, url), producer(broker.bootstrap) as kafka:
        async with websockets.connect(f"{url}/v1/stream?subscribe=none") as ws:
            op = {
                "op": "subscribe",
                "id": "nato",
                "filter": {"tags": ["nato"], "types": ["created"]},
            }
            frames(op, "subscribe")
            await ws.send(orjson.dumps(op).decode())
            frames(await recv(ws), "subscribed")
            await produce(kafka, config.topics.wire, [wire_event(1, "a", tags=["nato"])])
            event = await recv_type(ws, "event")
            frames(event, "event")
            frames(await recv_type(ws, "heartbeat", timeout=10), "heartbeat")
            await ws.send('{"op": "ping"}')
            frames(await recv_type(ws, "pong"), "pong")
            await ws.send('{"op": "unsubscribe", "id": "nato"}')
            frames(await recv_type(ws, "unsubscribed"), "unsubscribed")
            await ws.send('{"op": "subscribe", "filter": {"tags": "nato"}}')
            frames(await recv_type(ws, "error"), "error")
        await wait_for(lambda: sum(gw.hub.positions.values()) == 1)
        async with websockets.connect(f"{url}/v1/stream?cursor={gw.hub.head_cursor()}") as ws:
            frames(await recv_type(ws, "live"), "live")
        zero = encode_cursor(dict.fromkeys(gw.hub.positions, 0))
        async with websockets.connect(f"{url}/v1/stream?cursor={zero}") as ws:
            frames(await recv_type(ws, "resync"), "resync")
