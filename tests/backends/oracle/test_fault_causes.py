"""Each failed call is logged for what it is: a URL that does not parse, DNS, a refused connection, or
an HTTP status a server really sent (never LiteLLM's own "500" for a request that never left).

The real client (LiteLLM over real sockets) against real loopback ports and servers; only the 500
comes from the wire-level fake, which is a server that really sends it.
"""

from __future__ import annotations

import asyncio

import pytest

from kame_cli.backends.oracle.config import LlmConfig
from kame_cli.backends.oracle.faults import LlmFault, classify
from kame_cli.backends.oracle.llm import LlmClient
from tests.support.llm_server import FaultyOpenAI, free_port


def _fault_of(api_base: str) -> LlmFault:
    """The fault one real streamed call to `api_base` ends in."""
    client = LlmClient(LlmConfig(provider="openai", model="m", read_timeout_s=5.0), api_base=api_base)

    async def call() -> LlmFault:
        try:
            async for _ in client.stream([{"role": "user", "content": "hello"}]):
                pass
        except Exception as err:
            return classify(err, where="m", key_env=None, secret=None, first_chunk_seen=False)
        finally:
            await client.close()
        raise AssertionError(f"a call to {api_base} succeeded")

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("api_base", "kind", "words"),
    [
        ("http://[::1/v1", "bad_url", "the URL does not parse"),
        ("http://127.0.0.1:{free_port}/v1", "unreachable", "connection refused"),
        ("http://kame-no-such-host.invalid/v1", "unreachable", "host name not found (DNS)"),
    ],
)
def test_a_request_that_never_left_is_not_a_server_error(api_base, kind, words) -> None:
    # The port is found when the test runs: a port in the test's id would differ between xdist workers.
    fault = _fault_of(api_base.replace("{free_port}", str(free_port())))
    assert (fault.kind, fault.status) == (kind, None), fault
    assert fault.state == "error" and words in fault.message, fault
    assert "500" not in fault.message and "server error" not in fault.message


def test_a_status_a_server_sent_is_logged_as_that_status() -> None:
    with FaultyOpenAI() as server:
        server.mode = 500
        fault = _fault_of(server.api_base)
    assert (fault.kind, fault.status, fault.state) == ("server_error", 500, "degraded"), fault
    assert "server error 500" in fault.message
