"""Fetching a sidecar's ``/metrics`` (the only I/O in ``mesh.observe``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

import aiohttp

from mesh.observe.samples import ISTIO_FAMILIES, Scrape, ScrapeError, parse_exposition

MAX_BODY_BYTES = 8 * 1024 * 1024  # a sidecar's page is a few hundred KB at most; refuse runaway answers


def metrics_url(address: str) -> str:
    """``host:port`` (or a full ``http://`` URL) → the ``/metrics`` URL."""
    if "://" in address:
        base = address.rstrip("/")
        return base if base.endswith("/metrics") else base + "/metrics"
    return f"http://{address}/metrics"


async def scrape(
    session: aiohttp.ClientSession,
    address: str,
    *,
    timeout: float = 2.0,
    names: Collection[str] | None = ISTIO_FAMILIES,
    clock: Callable[[], float] = time.monotonic,
) -> Scrape:
    """One scrape of ``address``; ``ScrapeError`` with reason timeout, connect, http or parse."""
    url = metrics_url(address)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise ScrapeError("http", f"{url} answered {response.status}")
            # The whole body (``content.read(n)`` would stop at whatever one network read brought), bounded.
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ScrapeError("http", f"{url}: the page is larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            at = clock()
    except TimeoutError as exc:
        raise ScrapeError("timeout", f"{url}: no answer within {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise ScrapeError("connect", f"{url}: {exc}") from exc
    # Parsing a page costs milliseconds of CPU (prometheus-client's parser): in a thread, so the event
    # loop (sidecar syncs, API requests) keeps its turns meanwhile.
    return await asyncio.to_thread(parse_exposition, body.decode("utf-8", "replace"), at, names)


__all__ = ["MAX_BODY_BYTES", "metrics_url", "scrape"]
