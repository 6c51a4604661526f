"""Audio devices: which microphone and speaker a session would open, and at which rate."""

from __future__ import annotations

from kame_cli.audio_io.devices import Kind
from kame_cli.doctor.report import Check, Details, Status
from kame_cli.errors import DeviceError

_ALTERNATIVE = {"input": "kame talk --input FILE.wav", "output": "kame talk --output FILE.wav --no-speaker"}


def check_audio(kind: Kind, spec: str | None) -> Check:
    """Resolve the device as `kame talk` would, and ask PortAudio whether it takes 24 kHz float32."""
    from kame_cli.audio_io.devices import choose_stream_format, format_check, list_devices, resolve_device
    from kame_cli.clock import SAMPLE_RATE

    name = f"audio-{'in' if kind == 'input' else 'out'}"
    try:
        devices = list_devices()
        index = resolve_device(spec, kind, devices)
    except DeviceError as err:
        # No sound card is fine for file sessions; a device asked for by name must exist.
        status: Status = "warn" if spec is None else "fail"
        return Check(name, status, str(err).split(": ")[0], f"{_ALTERNATIVE[kind]}, or see `kame devices`")
    if index is None:
        index = next(
            d.index for d in devices if (d.is_default_input if kind == "input" else d.is_default_output)
        )
    device = next(d for d in devices if d.index == index)
    accepts = format_check(index, kind)
    label = f"{device.index}: {device.name} ({device.host_api})"
    try:
        rate, channels = choose_stream_format(device.default_samplerate, device.channels(kind), accepts)
    except DeviceError as err:
        return Check(
            name, "fail", f"{label}: {err}", "pick another device with --input-device/--output-device"
        )
    layout = "mono" if channels == 1 else f"{channels} channels"
    details: Details = {"device": device.name, "index": device.index, "rate": rate, "channels": channels}
    if rate == SAMPLE_RATE:
        return Check(name, "ok", f"{label}: opens at 24 kHz {layout}", None, details)
    return Check(
        name, "ok", f"{label}: opens at {rate} Hz {layout}, resampled to 24 kHz by kame", None, details
    )
