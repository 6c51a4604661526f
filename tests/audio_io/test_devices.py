"""Device resolution, format choice and the devices table, on device lists like PortAudio's."""

from __future__ import annotations

import pytest
from rich.console import Console

from kame_cli.audio_io import AudioDevice, choose_stream_format, render_devices_table, resolve_device
from kame_cli.errors import DeviceError

LAPTOP = [
    AudioDevice(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", "ALSA", 2, 2, 48000.0),
    AudioDevice(1, "HDA Intel PCH: HDMI 0 (hw:0,3)", "ALSA", 0, 8, 44100.0),
    AudioDevice(2, "USB Headset: Audio (hw:1,0)", "ALSA", 1, 2, 44100.0),
    AudioDevice(3, "pulse", "ALSA", 32, 32, 44100.0),
    AudioDevice(4, "default", "ALSA", 32, 32, 44100.0, is_default_input=True, is_default_output=True),
    AudioDevice(5, "USB Headset: Audio", "JACK Audio Connection Kit", 1, 2, 48000.0),
]


def _message(err: pytest.ExceptionInfo[DeviceError]) -> str:
    message = str(err.value)
    assert "\n" not in message and "kame devices" in message
    return message


def test_default_index_and_name_resolve() -> None:
    assert resolve_device(None, "input", LAPTOP) is None
    assert resolve_device("", "output", LAPTOP) is None
    assert resolve_device(2, "input", LAPTOP) == 2
    assert resolve_device("1", "output", LAPTOP) == 1
    assert resolve_device("DEFAULT", "output", LAPTOP) == 4  # exact name, case-insensitive
    assert resolve_device("alc257", "input", LAPTOP) == 0  # substring, case-insensitive
    assert resolve_device("hdmi", "output", LAPTOP) == 1


def test_a_name_shown_under_two_host_apis_prefers_the_default_api() -> None:
    assert resolve_device("usb headset", "input", LAPTOP) == 2


def test_an_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device("hw:0", "output", LAPTOP)
    message = _message(info)
    assert (
        "0: 'HDA Intel PCH: ALC257 Analog (hw:0,0)'" in message
        and "1: 'HDA Intel PCH: HDMI 0 (hw:0,3)'" in message
    )
    assert "--output-device" in message


def test_an_unknown_name_or_index_is_refused() -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device("scarlett", "input", LAPTOP)
    assert "no input device matches 'scarlett'" in _message(info) and "--input-device" in str(info.value)
    with pytest.raises(DeviceError) as info:
        resolve_device(17, "output", LAPTOP)
    assert "output device 17 does not exist" in _message(info)


def test_a_device_without_channels_of_that_kind_is_refused() -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device(1, "input", LAPTOP)
    assert "has no input channels" in _message(info)
    with pytest.raises(DeviceError) as info:
        resolve_device("hdmi", "input", LAPTOP)
    assert "'HDA Intel PCH: HDMI 0 (hw:0,3)' (1) has no input channels" in _message(info)


def test_no_default_device_points_to_files() -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device(None, "input", [])
    assert "no default input device" in _message(info) and "--input FILE" in str(info.value)
    outputs_only = [AudioDevice(0, "HDMI", "ALSA", 0, 2, 48000.0, is_default_output=True)]
    with pytest.raises(DeviceError):
        resolve_device(None, "input", outputs_only)
    assert resolve_device(None, "output", outputs_only) is None


def test_format_prefers_24k_mono_then_the_device_rate_then_stereo() -> None:
    anything = {(24000, 1), (48000, 1), (24000, 2), (48000, 2)}
    assert choose_stream_format(48000.0, 2, lambda r, c: (r, c) in anything) == (24000, 1)
    assert choose_stream_format(44100.0, 2, lambda r, c: r == 44100) == (44100, 1)
    assert choose_stream_format(48000.0, 2, lambda r, c: c == 2 and r == 48000) == (48000, 2)
    with pytest.raises(DeviceError, match="accepts none of 24000 Hz, 96000 Hz"):
        choose_stream_format(96000.0, 1, lambda r, c: False)


def test_devices_table_shows_channels_rates_and_defaults() -> None:
    console = Console(record=True, width=160)
    console.print(render_devices_table(LAPTOP))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "USB Headset: Audio (hw:1,0)" in line)
    assert "44100 Hz" in row and " 1 " in row and " 2 " in row
    default_row = next(line for line in text.splitlines() if line.startswith("│ 4 "))
    assert "input, output" in default_row
    console = Console(record=True, width=160)
    console.print(render_devices_table([]))
    assert "No audio devices found" in console.export_text()
