"""Concurrent token streams, from one to many: tokens per second on each side, the gap between
tokens that velesio adds at p99, and the API's and the worker's memory at each level."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.procs import StackProcesses
from bench.report import Section, ms, percentile
from tests.support.processes import RedisServer, Stack
from velesio_core import machine

LEVELS = (1, 2, 4, 8, 16, 32, 64)
QUICK_LEVELS = (1, 8, 64)
BODY = {"prompt": "The knight looks at the dragon and says", "n_predict": 128, "ignore_eos": True, "stream": True,
        "seed": 1}  # fmt: skip
#: The added p99 gap between tokens a level may show and still count as keeping up.
GAP_LIMIT = 0.005


@dataclass
class Streams:
    """What the clients of one level saw: tokens, and the gaps between consecutive tokens of a stream."""

    tokens: int = 0
    streams: int = 0
    gaps: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]):
    """The body's pieces as they arrive: HTTP/1.1 chunks, a Content-Length, or up to the close."""
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            yield (await reader.readexactly(size + 2))[:-2]
    elif b"content-length" in headers:
        yield await reader.readexactly(int(headers[b"content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


async def _client(url: str, auth: dict[str, str], deadline: float, seen: Streams) -> None:
    """One client: a keep-alive connection, one stream after another until ``deadline``. A token
    is an event of llama.cpp's stream with ``"stop":false``; the gaps are between the arrival of
    each token and the previous one of the same stream (the wait for a slot is not a gap)."""
    parts = urlsplit(url)
    data = json.dumps(BODY).encode()
    head = ["POST /completion HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(data)}", *(f"{name}: {value}" for name, value in auth.items())]  # fmt: skip
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + data
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            status = await reader.readline()
            if not status:  # the server closed an idle keep-alive connection (llama-server: after 100)
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                continue
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip().lower()
            if b" 200 " not in status:
                raise RuntimeError(f"{url}: {status!r}")
            last, buffer = None, b""
            async for piece in _read_body(reader, headers):
                arrived = time.perf_counter()
                buffer += piece
                *events, buffer = buffer.split(b"\n")
                for event in events:
                    if b'"stop":false' in event:
                        seen.tokens += 1
                        if last is not None:
                            seen.gaps.append(arrived - last)
                        last = arrived
            seen.streams += 1
            delimited = b"chunked" in headers.get(b"transfer-encoding", b"") or b"content-length" in headers
            if headers.get(b"connection") == b"close" or not delimited:
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    finally:
        writer.close()


def streams(url: str, auth: dict[str, str], clients: int, seconds: float) -> Streams:
    async def run() -> Streams:
        seen = Streams()
        started = time.perf_counter()
        await asyncio.gather(*(_client(url, auth, started + seconds, seen) for _ in range(clients)))
        seen.seconds = time.perf_counter() - started
        return seen

    return asyncio.run(run())


class PeakMemory:
    """The largest RSS of each role while it runs, sampled from a thread every 0.2 s."""

    def __init__(self, processes: StackProcesses) -> None:
        self._processes, self._stop = processes, threading.Event()
        self.peak: dict[str, int] = processes.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for role, size in self._processes.rss().items():
                self.peak[role] = max(self.peak[role], size)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def sweep(section: Section, stack: Stack, redis: RedisServer, levels: tuple[int, ...], seconds: float,
          slots: int) -> None:  # fmt: skip
    processes = StackProcesses.of(stack, redis)
    streams(stack.llama_url, {}, 2, 1)  # warm up both sides
    streams(stack.base_url, stack.auth, 2, 1)
    keeping_up, over_limit = None, False
    for level in levels:
        print(f"bench: {level} concurrent streams ...", flush=True)
        direct = streams(stack.llama_url, {}, level, seconds)
        with PeakMemory(processes) as memory:
            gateway = streams(stack.base_url, stack.auth, level, seconds)
        if min(direct.streams, gateway.streams) == 0:
            raise RuntimeError(f"{level} streams: no stream finished in {seconds} s")
        noun = "stream" if level == 1 else "streams"
        d99, g99 = percentile(direct.gaps, 0.99), percentile(gateway.gaps, 0.99)
        added = g99 - d99
        if added >= GAP_LIMIT:
            over_limit = True
        elif not over_limit:
            keeping_up = level
        section.add(f"{level} {noun}: tokens/s direct / through velesio / ratio",
                    f"{direct.rate:,.0f} / {gateway.rate:,.0f} / {gateway.rate / direct.rate:.2f}")  # fmt: skip
        section.add(f"{level} {noun}: p99 gap between tokens, direct / through velesio",
                    f"{ms(d99)} / {ms(g99)}")  # fmt: skip
        section.add(f"{level} {noun}: **added p99 gap** between tokens", ms(added), "< 5 ms", added < GAP_LIMIT)
        section.add(f"{level} {noun}: peak RSS of the API / the worker",
                    f"{memory.peak['api'] / 2**20:.0f} / {memory.peak['worker'] / 2**20:.0f} MiB")  # fmt: skip
    section.add("**largest level** whose added p99 gap between tokens stays under 5 ms",
                f"{keeping_up} stream{'s' * (keeping_up > 1)}" if keeping_up else "none")  # fmt: skip
    section.notes += [
        f"Each level runs that many clients for {seconds:g} s on each side, first directly against the",
        "worker's llama-server, then through velesio: each client streams 128-token answers of /completion",
        "(`stream: true`, `ignore_eos`) one after another on a keep-alive connection. A token is one event",
        "of the stream; its gap is the time since the previous token of the same stream arrived (the",
        "first token's wait, for a slot included, is not a gap), and tokens/s counts every client's",
        f"tokens over the level's time. llama-server has {slots} slots (LLAMA_SLOTS): streams beyond them",
        "wait for a slot on both sides (in llama-server's own queue directly, in velesio's queue through",
        "it), so tokens/s stops growing there. The largest level counts up from 1 and stops at the first",
        "level over 5 ms. RSS is the API's processes together (gunicorn's master and workers) and the",
        "worker's Python process, the highest of samples every 0.2 s during the level. The client is one",
        f"asyncio process of the benchmark, on the same {machine.usable_cpus()} CPUs as everything it measures.",
    ]
