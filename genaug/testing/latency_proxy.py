"""A TCP proxy that adds a round-trip delay and a bandwidth cap, to measure streaming from a far object store.

    python -m genaug.testing.latency_proxy --target 127.0.0.1:9000 --port 9100 --delay-ms 50 --mbps 100

Each chunk a client sends (an HTTP request) is held `--delay-ms` before it reaches the server, so every request
costs one emulated round trip; the server's answer is paced to `--mbps` megabytes per second per connection. The
benchmark (`scripts/bench_stream.py --remote --delay-ms ...`) points AWS_ENDPOINT_URL at the proxy; the tests
start it through genaug.testing.servers.start_latency_proxy. With `--count-file PATH` it keeps in PATH the number of
bytes it relayed from the server to clients (response headers and bodies), rewritten atomically after every chunk:
what a store really sent, counted outside genaug.
"""

from __future__ import annotations

import argparse
import asyncio
import os

_CHUNK = 64 * 1024


class _Counter:
    """Bytes relayed from the server, written to a file (temp + rename) after every chunk when a path is given."""

    def __init__(self, path: str | None) -> None:
        self.path, self.total = path, 0
        self.add(0)

    def add(self, n: int) -> None:
        """Count n more bytes and store the total."""
        self.total += n
        if self.path:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(str(self.total))
            os.replace(tmp, self.path)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, rate: float, counter=None
) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            if counter is not None:
                counter.add(len(data))
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except RuntimeError:
            pass


async def _serve(target: tuple[str, int], port: int, delay: float, rate: float, count: str | None = None) -> None:
    counter = _Counter(count)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w, delay, 0.0), _pipe(server_r, client_w, 0.0, rate, counter))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Run the proxy until killed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="host:port of the server")
    ap.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="delay of every client chunk (a round trip)")
    ap.add_argument("--mbps", type=float, default=0.0, help="megabytes per second per connection (0: no cap)")
    ap.add_argument("--count-file", default=None, help="keep the number of bytes relayed to clients in this file")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    asyncio.run(_serve((host, int(port)), a.port, a.delay_ms / 1000.0, a.mbps * 1e6, a.count_file))


if __name__ == "__main__":
    main()
