"""The hub's connection failures are caught whichever HTTP library huggingface_hub speaks through:
requests below 1.0, httpx from 1.0 on (the GPU machine's image has 1.33). The loader's tests against
a silent hub (tests/engine/test_loader.py) pass with both; docs/gpu.md records the run with 1.33."""

from __future__ import annotations

import httpx
import pytest
import requests

from kame_cli.hub import transport_errors


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("silent"),
        requests.ConnectionError("refused"),
        requests.Timeout("silent"),
    ],
)
def test_either_librarys_connection_failure_is_a_transport_error(error: Exception) -> None:
    with pytest.raises(transport_errors()):
        raise error
