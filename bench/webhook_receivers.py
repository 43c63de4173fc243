"""100 minimal HTTP/1.1 keep-alive receivers for the notifier benchmark, in their own process.

Each answers every POST with ``200`` and an empty body and counts it; ``GET /count`` on the
control port answers the total. Hand-written on asyncio streams so that the receivers cost as
little CPU as possible and the benchmark measures the sender.

    python bench/webhook_receivers.py COUNT

prints one line: the control port, then the receivers' ports, space-separated.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

total = 0
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

# Called with (receiver index, request head, body) for every POST; bench/soak.py records them.
OnPost = Callable[[int, bytes, bytes], None]


async def handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    index: int = 0,
    on_post: OnPost | None = None,
) -> None:
    global total
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /count"):
                body = str(total).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            elif head.startswith(b"GET /reset"):
                total = 0
                writer.write(OK)
            else:
                total += 1
                if on_post is not None:
                    on_post(index, head, body)
                writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(count: int, on_post: OnPost | None = None) -> list[asyncio.Server]:
    """A control server, then ``count`` receivers (index 0 .. count-1), all listening."""

    def handler(index: int):  # type: ignore[no-untyped-def]
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await handle(reader, writer, index, on_post)

        return run

    return [
        await asyncio.start_server(handler(i - 1), "127.0.0.1", 0, backlog=1024)
        for i in range(count + 1)
    ]


async def main(count: int) -> None:
    servers = await serve(count)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(" ".join(map(str, ports)), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
