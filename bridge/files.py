"""Files that pass through the bridge: read whole but never past a cap, fetched from the
public internet only, and served to the helpdesk so that no browser runs them.

Three rules from the security review (docs/security.md):
* aiohttp's `content.read(n)` returns what happens to be buffered, not n bytes: a body is
  read until its end, and refused as soon as it passes the cap;
* a URL the helpdesk names is fetched only from public addresses (checked after DNS and
  again at every redirect), so an agent's "attachment" cannot make the bridge read an
  internal service, a cloud metadata endpoint or the bridge's own /metrics;
* a customer's file is served as a download (raster images excepted), never as a page on
  the bridge's origin, which is also the call page's.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import AsyncIterator, Iterable
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
# Shown in the browser: images it decodes itself, never a document it would run.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
FILE_HEADERS = {"X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FileRefused(Exception):
    """The file is not fetched or served: too large, not a public address, not http(s).
    The message is safe to log (no URL: some carry a token)."""


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _public(address: str, allowed: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6 address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class _PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps only public addresses: the connection is made to an
    address that was checked, so a name that resolves differently the second time
    (DNS rebinding) gains nothing."""

    def __init__(self, allowed: tuple[Network, ...]) -> None:
        self._inner = DefaultResolver()
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [item for item in found if _public(item["host"], self._allowed)]
        if not public:
            raise FileRefused("the file's host is not a public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


async def chunks_capped(response: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, to its end; FileRefused as soon as it passes limit bytes
    (at once, when the announced length does)."""
    if response.content_length is not None and response.content_length > limit:
        raise FileRefused("the file is too large")
    seen = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        seen += len(chunk)
        if seen > limit:
            raise FileRefused("the file is too large")
        yield chunk


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or FileRefused when it is longer than limit bytes."""
    return b"".join([chunk async for chunk in chunks_capped(response, limit)])


async def fetch_public(url: str, limit: int, allowed: tuple[Network, ...] = ()) -> bytes:
    """GET a URL the helpdesk named, from a public address only (or one in `allowed`),
    following at most MAX_REDIRECTS redirects, each checked like the first."""
    resolver = _PublicResolver(allowed)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=FETCH_TIMEOUT) as session:
            for _hop in range(MAX_REDIRECTS + 1):
                _check_url(url, allowed)
                try:
                    async with session.get(url, allow_redirects=False) as response:
                        location = response.headers.get("Location")
                        if response.status in (301, 302, 303, 307, 308) and location:
                            url = urljoin(url, location)
                            continue
                        response.raise_for_status()
                        return await read_capped(response, limit)
                except aiohttp.ClientConnectorError as error:
                    if isinstance(error.__cause__, FileRefused):
                        raise error.__cause__ from None
                    raise
            raise FileRefused("too many redirects")
    finally:
        await resolver.close()  # the connector closes only a resolver it made itself


def _check_url(url: str, allowed: tuple[Network, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FileRefused("only http(s) files are fetched")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: checked by the resolver, after DNS
    if not _public(str(literal), allowed):  # an address: aiohttp would not resolve it
        raise FileRefused("the file's host is not a public address")


def download_headers(name: str, content_type: str) -> dict[str, str]:
    """Headers for a customer's file served to the helpdesk: a raster image may show in
    the browser; anything else (HTML, SVG, PDF, scripts) is a download, and no type is
    guessed from the content."""
    disposition = "inline" if content_type in INLINE_TYPES else "attachment"
    return {**FILE_HEADERS, "Content-Type": content_type,
            "Content-Disposition": aiohttp.helpers.content_disposition_header(
                disposition, filename=name or "file")}


async def stream_file(request: web.Request, chunks: AsyncIterator[bytes], name: str,
                      content_type: str, length: int | None = None) -> web.StreamResponse:
    """Serve a customer's file as it arrives from the platform: a few chunks in memory,
    whatever its size. Whatever is refused before the first byte is the caller's to answer;
    a source that fails midway cuts the download off, which the client sees as incomplete."""
    response = web.StreamResponse(headers=download_headers(name, content_type))
    if length is not None:
        response.content_length = length
    first = await anext(chunks, b"")  # a refusal (too large) raises here, before the headers
    await response.prepare(request)
    try:
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    except (FileRefused, aiohttp.ClientError, asyncio.TimeoutError) as error:
        log.warning("a customer file stopped midway (%s); the download was cut off", error
                    if isinstance(error, FileRefused) else type(error).__name__)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def serve_download(request: web.Request, url: str, *, limit: int, name: str,
                         content_type: str, headers: dict[str, str] | None = None
                         ) -> web.StreamResponse:
    """Serve the file at url (a platform's, fetched with its credentials in headers) to the
    requester, streamed, at most limit bytes. FileRefused, aiohttp.ClientError or a timeout
    before the first byte is sent are the caller's to answer (refused())."""
    async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT) as session:
        async with session.get(url, headers=headers) as response:
            if response.status != 200:
                raise FileRefused(f"the platform answered {response.status}")
            return await stream_file(request, chunks_capped(response, limit), name,
                                     content_type, response.content_length)


def refused() -> web.Response:
    """The answer for a file that could not be fetched from the platform (the reason is in
    the log, not in the answer)."""
    return web.Response(status=502, text="the file could not be fetched", headers=FILE_HEADERS)
