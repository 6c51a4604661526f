"""Who may use the server: the access token (401), the browser Origin (403), TLS with a certificate
made at start (trusted explicitly: a session; not trusted: refused)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from kame_cli.serve import protocol
from tests.serve.conftest import Server, start_server

TOKEN = "s3cret-token-for-tests"
ALLOWED = "https://kame.example"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("secured") / "logs",
        "--token-env",
        "KAME_TEST_TOKEN",
        "--allow-origin",
        ALLOWED,
        "--ssl-self-signed",
        env={"KAME_TEST_TOKEN": TOKEN},
    )
    try:
        yield server
    finally:
        server.terminate()


def _certificate(server: Server) -> tuple[Path, str]:
    match = next(re.search(r"TLS certificate (\S+) \(SHA-256 ([0-9A-F:]+)\)", line) for line in server.stderr)
    assert match is not None
    return Path(match.group(1)), match.group(2)


def _trusting(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(_certificate(server)[0]))


async def _status(server: Server, path: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a WebSocket upgrade (101 when it was accepted)."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"{server.url}{path}", headers=headers, ssl=_trusting(server))
        except aiohttp.WSServerHandshakeError as err:
            return err.status
        try:
            first = await ws.receive(60)
            assert protocol.decode(first.data) == protocol.Handshake()
        finally:
            await ws.close()
        return 101


def test_no_token_or_a_wrong_one_is_401_and_the_right_one_gets_a_session(secured: Server) -> None:
    async def scenario() -> list[int]:
        return [
            await _status(secured, "/api/chat?kame=1"),
            await _status(secured, "/api/chat?kame=1", {"Authorization": "Bearer wrong"}),
            await _status(secured, "/api/chat?kame=1&token=wrong"),
            await _status(secured, "/api/chat?kame=1", {"Authorization": f"Bearer {TOKEN}"}),
            await _status(secured, f"/api/chat?kame=1&token={TOKEN}"),
        ]

    assert asyncio.run(scenario()) == [401, 401, 401, 101, 101]
    # Only the sessions with the right token were started.
    assert len(secured.sessions()) == 2
    assert TOKEN not in "".join(secured.stderr)


def test_a_foreign_origin_is_403_its_own_and_an_allowed_one_pass(secured: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def scenario() -> list[int]:
        return [
            await _status(secured, "/api/chat?kame=1", {**auth, "Origin": "https://evil.example"}),
            await _status(secured, "/api/chat?kame=1", {**auth, "Origin": ALLOWED}),
            await _status(
                secured, "/api/chat?kame=1", {**auth, "Origin": f"https://127.0.0.1:{secured.port}"}
            ),
        ]

    assert asyncio.run(scenario()) == [403, 101, 101]


def test_tls_with_the_certificate_trusted_works_and_untrusted_is_refused(secured: Server) -> None:
    path, fingerprint = _certificate(secured)
    assert len(fingerprint.split(":")) == 32 and path.is_file()

    async def untrusted() -> None:
        async with aiohttp.ClientSession() as http:
            await http.ws_connect(f"{secured.url}/api/chat", headers={"Authorization": f"Bearer {TOKEN}"})

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(untrusted())
    # The trusted case is every session above: each went over TLS with the certificate trusted.
    assert secured.url.startswith("https://")
