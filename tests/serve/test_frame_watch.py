"""The gate's frame watch: frames followed by their headers alone, whatever the chunking."""

from __future__ import annotations

import pytest

from kame_cli.serve.security import FrameWatch

HEAD = b"GET /api/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def _frame(size: int) -> bytes:
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    return bytes([0x82]) + length + b"mask" + bytes(size)


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000, 1 << 20])
def test_frames_under_the_limit_pass_in_any_chunking(chunk: int) -> None:
    data = HEAD + _frame(5) + _frame(125) + _frame(126) + _frame(70_000) + _frame(0)
    watch = FrameWatch(limit=70_000)
    assert all(watch.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_a_frame_over_the_limit_is_refused_at_its_header(chunk: int) -> None:
    data = HEAD + _frame(10) + _frame(2000)[:8]  # only the big frame's header has come
    watch = FrameWatch(limit=1000)
    results = [watch.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    assert results[-1] is False and all(results[:-1])
    assert watch.feed(bytes(100)) is False  # what follows is never passed on


def test_a_plain_http_request_is_not_read_as_frames() -> None:
    watch = FrameWatch(limit=10)
    assert watch.feed(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + b"\xff" * 100)
