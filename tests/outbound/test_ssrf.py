"""The outbound URL policy, against real loopback servers; nothing else is ever connected to."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskgate.outbound.guarded_http import fetch_limited, guarded_client
from taskgate.outbound.ssrf import BlockedURLError, URLPolicy, check_url

LOOPBACK = URLPolicy(allow_loopback=True)


@dataclass
class LoopbackServer:
    port: int
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _response(status: str, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    return head.encode() + body


@contextlib.asynccontextmanager
async def loopback_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[LoopbackServer]:
    """A tiny HTTP/1.1 server: /ok, /host (echoes Host), /big/<n>, /redirect, /slow."""
    state = LoopbackServer(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            _method, path, _ = head.split("\r\n", 1)[0].split(" ", 2)
            headers = {}
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(": ")
                headers[name.lower()] = value
            state.paths.append(path)
            state.hosts.append(headers.get("host", ""))
            if path == "/ok":
                writer.write(_response("200 OK", b"hello"))
            elif path == "/host":
                writer.write(_response("200 OK", headers.get("host", "").encode()))
            elif path.startswith("/big/"):
                writer.write(_response("200 OK", b"x" * int(path.removeprefix("/big/"))))
            elif path == "/redirect":
                location = f"http://localhost:{state.port}/ok"
                writer.write(_response("302 Found", b"", f"location: {location}\r\n"))
            elif path == "/slow":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nx")
                await writer.drain()
                await reader.read()  # until the client gives up
            else:
                writer.write(_response("404 Not Found", b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name → addresses, answered by the event loop's getaddrinfo; others resolve as usual."""
    records: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in records:
            return await real_getaddrinfo(host, port, *args, **kwargs)
        if not records[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers: list[tuple[Any, ...]] = []
        for address in records[host]:
            if ip_address(address).version == 4:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
            else:
                sockaddr = (address, int(port), 0, 0)
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", sockaddr))
        return answers

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return records


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:93.184.216.34]/",
        "http://100.64.0.1/",
        "http://localhost:8080/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
        "http://[fc00::1]/",
    ],
)
async def test_check_url_refuses_non_public_addresses(url: str) -> None:
    with pytest.raises(BlockedURLError):
        await check_url(url, URLPolicy())


@pytest.mark.parametrize(
    "url", ["http://93.184.216.34/hook", "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/"]
)
async def test_check_url_accepts_a_public_literal(url: str) -> None:
    await check_url(url, URLPolicy())


@pytest.mark.parametrize(
    ("url", "policy", "allowed"),
    [
        ("http://10.0.0.1/", URLPolicy(allow_private=True), True),
        ("http://100.64.0.1/", URLPolicy(allow_private=True), True),
        ("http://[fe80::1]/", URLPolicy(allow_private=True), True),
        ("http://127.0.0.1/", URLPolicy(allow_private=True), False),
        ("http://169.254.169.254/", URLPolicy(allow_private=True), False),
        ("http://[fd00:ec2::254]/", URLPolicy(allow_private=True), False),
        ("http://127.0.0.1/", LOOPBACK, True),
        ("http://[::1]/", LOOPBACK, True),
        ("http://localhost/", LOOPBACK, True),
        ("http://10.0.0.1/", LOOPBACK, False),
        ("http://[::ffff:127.0.0.1]/", LOOPBACK, False),
        ("http://0.0.0.0/", URLPolicy(allow_private=True, allow_loopback=True), False),
        ("http://224.0.0.1/", URLPolicy(allow_private=True, allow_loopback=True), False),
    ],
)
async def test_policy_flags_admit_only_their_class(
    url: str, policy: URLPolicy, allowed: bool
) -> None:
    if allowed:
        await check_url(url, policy)
    else:
        with pytest.raises(BlockedURLError):
            await check_url(url, policy)


async def test_an_allowlisted_host_skips_the_address_check() -> None:
    policy = URLPolicy(allowed_hosts=frozenset({"LocalHost."}))
    await check_url("http://localhost:9000/hook", policy)
    with pytest.raises(BlockedURLError):
        await check_url("http://127.0.0.1:9000/hook", policy)


@pytest.mark.parametrize(
    "url", ["ftp://93.184.216.34/", "file:///etc/passwd", "http://", "not a url", "gopher://x/"]
)
async def test_check_url_refuses_other_schemes_and_missing_hosts(url: str) -> None:
    with pytest.raises(BlockedURLError):
        await check_url(url, URLPolicy())


async def test_every_resolved_address_must_be_allowed(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["mixed.example.test"] = ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(BlockedURLError, match="private") as caught:
        await check_url("https://mixed.example.test/", URLPolicy())
    assert caught.value.host == "mixed.example.test"


async def test_an_unresolvable_host_is_refused(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["nowhere.example.test"] = []
    with pytest.raises(BlockedURLError, match="cannot resolve"):
        await check_url("https://nowhere.example.test/", URLPolicy())


async def test_the_refusal_never_repeats_the_url_path() -> None:
    with pytest.raises(BlockedURLError) as caught:
        await check_url("http://10.0.0.1/services/T0/B0/hook-credential", URLPolicy())
    assert "hook-credential" not in str(caught.value)
    assert "10.0.0.1" in str(caught.value)


async def test_the_client_refuses_loopback_by_default() -> None:
    async with loopback_server() as server, guarded_client(URLPolicy()) as client:
        with pytest.raises(BlockedURLError, match="loopback"):
            await client.get(server.url("/ok"))
    assert server.connections == 0


async def test_the_client_reaches_loopback_when_allowed() -> None:
    async with loopback_server() as server, guarded_client(LOOPBACK) as client:
        response = await client.get(server.url("/ok"))
    assert (response.status_code, response.text) == (200, "hello")


async def test_a_redirect_is_returned_not_followed() -> None:
    async with loopback_server() as server, guarded_client(LOOPBACK) as client:
        result = await fetch_limited(client, "GET", server.url("/redirect"))
    assert result.status_code == 302
    assert result.headers["location"].endswith("/ok")
    assert server.paths == ["/redirect"]


async def test_a_forced_redirect_is_checked_hop_by_hop() -> None:
    # 127.0.0.1 is explicitly allowed, but the redirect's target (localhost) is not.
    policy = URLPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    async with loopback_server() as server, guarded_client(policy) as client:
        with pytest.raises(BlockedURLError, match="loopback"):
            await client.get(server.url("/redirect"), follow_redirects=True)
    assert server.paths == ["/redirect"]


async def test_the_check_happens_at_connection_time(fake_dns: dict[str, list[str]]) -> None:
    """DNS rebinding: the host passed the check when saved, then its answer changed."""
    fake_dns["hook.example.test"] = ["93.184.216.34"]
    await check_url("http://hook.example.test/", URLPolicy())
    async with loopback_server() as server:
        fake_dns["hook.example.test"] = ["127.0.0.1"]
        async with guarded_client(URLPolicy()) as client:
            with pytest.raises(BlockedURLError):
                await client.get(server.url("/ok", host="hook.example.test"))
    assert server.connections == 0


async def test_the_client_connects_to_the_checked_address_under_the_host_name(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["hook.example.test"] = ["127.0.0.1"]
    async with loopback_server() as server, guarded_client(LOOPBACK) as client:
        response = await client.get(server.url("/host", host="hook.example.test"))
    assert response.text == f"hook.example.test:{server.port}"


@pytest.mark.parametrize(
    ("size", "limit", "truncated"),
    [(5000, 1000, True), (1000, 1000, False), (999, 1000, False), (1536 * 1024, None, True)],
)
async def test_the_response_body_is_capped(size: int, limit: int | None, truncated: bool) -> None:
    client = (
        guarded_client(LOOPBACK)
        if limit is None
        else guarded_client(LOOPBACK, max_response_bytes=limit)
    )
    async with loopback_server() as server, client:
        result = await fetch_limited(client, "GET", server.url(f"/big/{size}"))
    assert result.status_code == 200
    assert result.truncated is truncated
    assert len(result.body) == min(size, limit or 1024 * 1024)
    assert result.elapsed_ms >= 0


async def test_a_dripping_response_hits_the_total_timeout() -> None:
    async with loopback_server() as server, guarded_client(LOOPBACK, timeout=5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await fetch_limited(client, "GET", server.url("/slow"), total_timeout=0.3)


@dataclass
class _Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def _tls_for(hostname: str, tmp_path: Path) -> _Tls:
    now = dt.datetime.now(dt.UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True).add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("taskgate test CA", ca_key, "taskgate test CA", ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = certificate(hostname, leaf_key, "taskgate test CA", ca_key, ca=False)

    cert_file, key_file = tmp_path / f"{hostname}.pem", tmp_path / f"{hostname}.key"
    cert_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    return _Tls(server=server, client=client)


@pytest.mark.parametrize(("cert_host", "ok"), [("hook.example.test", True), ("other.test", False)])
async def test_tls_still_verifies_the_host_name(
    fake_dns: dict[str, list[str]], tmp_path: Path, cert_host: str, ok: bool
) -> None:
    fake_dns["hook.example.test"] = ["127.0.0.1"]
    tls = _tls_for(cert_host, tmp_path)
    async with (
        loopback_server(tls=tls.server) as server,
        guarded_client(LOOPBACK, ssl_context=tls.client) as client,
    ):
        url = f"https://hook.example.test:{server.port}/host"
        if ok:
            response = await client.get(url)
            assert response.text == f"hook.example.test:{server.port}"
        else:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)
