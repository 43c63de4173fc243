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

total = 0
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global total
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /count"):
                body = str(total).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            elif head.startswith(b"GET /reset"):
                total = 0
                writer.write(OK)
            else:
                total += 1
                writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(count: int) -> None:
    servers = [
        await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024) for _ in range(count + 1)
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(" ".join(map(str, ports)), flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
