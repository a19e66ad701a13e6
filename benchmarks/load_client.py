"""The load generator of ``bench_serving``, run in its own process: raw HTTP/1.1 over keep-alive connections.

Open loop (``--rate``): request ``i`` is due at ``i / rate`` seconds and its latency runs from then, so a slow
service is charged for the queue it causes (no coordinated omission); a request waits for an idle connection of
the ``--connections`` pool. Closed loop (``--rate 0``): each connection sends its next request as soon as the
last one is answered. The bodies come one per line from ``--bodies``. Prints one JSON line: latency percentiles,
the rate achieved, the failures, and the client's own CPU time (what the load generator cost the machine).

    python -m benchmarks.load_client --port P --bodies B.jsonl --rate 1000 --connections 32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

import numpy as np


def request_bytes(body: bytes) -> bytes:
    head = f"POST /recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    """Send one request and read its whole answer; returns the HTTP status."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split(b" ", 2)[1])


async def run(port: int, payloads: list[bytes], rate: float, connections: int, seconds: float) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    n = int(rate * seconds) if rate else None
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(payload: bytes, due: float) -> None:
        connection = await pool.get()
        try:
            status = await exchange(*connection, payload)
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as error:
            failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
            connection[1].close()
            connection = await asyncio.open_connection("127.0.0.1", port)
        else:
            if status == 200:
                latencies.append(time.perf_counter() - due)
            else:
                failures[str(status)] = failures.get(str(status), 0) + 1
        pool.put_nowait(connection)

    cpu_start, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    tasks = []
    if rate:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(payloads[i % len(payloads)], due)))
        await asyncio.gather(*tasks)
    else:

        async def loop(offset: int) -> None:
            i = offset
            while time.perf_counter() - start < seconds:
                await one(payloads[i % len(payloads)], time.perf_counter())
                i += connections

        await asyncio.gather(*(loop(k) for k in range(connections)))
    wall = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    for _, writer in [pool.get_nowait() for _ in range(pool.qsize())]:
        writer.close()
    ms = 1000 * np.asarray(latencies) if latencies else np.full(1, np.nan)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "mode": f"open loop at {rate:g}/s" if rate else "closed loop",
        "connections": connections,
        "requests": len(latencies),
        "failed": failures,
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(ms.max()), 3),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_share": round(cpu / wall, 3),  # cores the load generator used, on average
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="request bodies, one JSON per line")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second (0: closed loop)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    payloads = [request_bytes(line) for line in args.bodies.read_bytes().splitlines() if line]
    print(json.dumps(asyncio.run(run(args.port, payloads, args.rate, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
