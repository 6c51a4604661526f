"""moshi's message kinds: the bytes each one is, both ways, and what a reader refuses."""

from __future__ import annotations

import pytest

from kame_cli.events import FinalTranscript
from kame_cli.serve import metadata
from kame_cli.serve import protocol as p


@pytest.mark.parametrize(
    ("message", "data"),
    [
        (p.Handshake(), b"\x00"),  # moshi's Python server
        (p.Handshake(0, 7, with_versions=True), b"\x00" + bytes(4) + b"\x07\x00\x00\x00"),  # its Rust server
        (p.Audio(b"OggS..."), b"\x01OggS..."),
        (p.Text(" Paris"), b"\x02 Paris"),
        (p.Text("é"), b"\x02\xc3\xa9"),
        (p.Control(p.ControlAction.END_TURN), b"\x03\x01"),
        (p.Metadata({"type": "Status", "place": 2}), b'\x04{"type":"Status","place":2}'),
        (p.Error("the server is shutting down"), b"\x05the server is shutting down"),
        (p.Ping(), b"\x06"),
    ],
)
def test_each_kind_encodes_to_moshis_bytes_and_decodes_back(message: p.Message, data: bytes) -> None:
    assert p.encode(message) == data
    assert p.decode(data) == message


def test_the_kind_byte_is_the_enum_value() -> None:
    assert [k.value for k in p.Kind] == list(range(7))
    assert p.kind_of(p.Audio(b"")) is p.Kind.AUDIO


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\x09hello", "unknown message kind 9"),
        (b"\x02\xff\xfe", "not UTF-8"),
        (b"\x03", "one byte"),
        (b"\x03\x09", "unknown action 9"),
        (b"\x04[1, 2]", "JSON object"),
        (b"\x04{not json", "not JSON"),
    ],
)
def test_a_message_outside_the_protocol_is_one_clear_error(data: bytes, says: str) -> None:
    with pytest.raises(p.ProtocolError, match=says) as caught:
        p.decode(data)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "info",
    [
        metadata.OutputMark(7, 123.5),
        metadata.QueuePlace(2),
        metadata.SessionTime(1.25),
        metadata.TokenPieces((" Paris", "<pad>"), 0),
        FinalTranscript(3.0, "What is the capital of France?", 1.0, 2.5),
    ],
)
def test_metadata_shapes_go_through_json_and_back(info: metadata.Info) -> None:
    data = p.decode(p.encode(p.Metadata(metadata.to_json(info))))
    assert isinstance(data, p.Metadata) and metadata.from_json(data.data) == info


@pytest.mark.parametrize(
    "data", [{"type": "NoSuchThing"}, {"type": "Output", "index": "x"}, {"type": "Queue"}, {"no": "type"}]
)
def test_a_metadata_shape_this_version_does_not_know_is_none(data: dict) -> None:
    assert metadata.from_json(data) is None
