"""Who may use the server: the access token (401), the browser Origin (403), TLS with a certificate
made at start (trusted explicitly: a session; not trusted: refused)."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.serve import protocol
from tests.serve.conftest import Server, serving
from tests.session.conftest import kame_command, kame_env, write_wav

TOKEN = "s3cret-token-for-tests"
ALLOWED = "https://kame.example"


SECURED = ("--token-env", "KAME_TEST_TOKEN", "--allow-origin", ALLOWED, "--ssl-self-signed")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(
        tmp_path_factory.mktemp("secured") / "logs", *SECURED, env={"KAME_TEST_TOKEN": TOKEN}
    ) as server:
        yield server


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
            first = protocol.decode((await ws.receive(60)).data)
            if isinstance(first, protocol.Metadata):  # queued while the last session closes
                assert first.data["type"] == "Queue"
                first = protocol.decode((await ws.receive(60)).data)
            assert first == protocol.Handshake()
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


def test_kame_talk_over_tls_works_with_the_certificate_trusted_and_untrusted_is_one_line(
    secured: Server, tmp_path: Path
) -> None:
    path, _ = _certificate(secured)
    silence = write_wav(tmp_path / "silence.wav", np.zeros(24_000, np.float32))
    command = kame_command(
        "talk",
        "--server",
        f"wss://127.0.0.1:{secured.port}",
        "--input",
        str(silence),
        "--no-ui",
        "--output",
        str(tmp_path / "out.wav"),
    )
    env = {**kame_env(), "KAME_SERVER_TOKEN": TOKEN}
    trusted = subprocess.run(
        command,
        env={**env, "SSL_CERT_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert trusted.returncode == 0, trusted.stderr
    assert sf.info(tmp_path / "out.wav").frames == 24_000 // FRAME_SAMPLES * FRAME_SAMPLES + FRAME_SAMPLES

    (tmp_path / "out.wav").unlink()
    untrusted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert untrusted.returncode == 1
    (line,) = untrusted.stderr.strip().splitlines()
    assert "certificate is not trusted" in line and "SSL_CERT_FILE" in line
