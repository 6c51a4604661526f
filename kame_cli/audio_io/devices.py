"""Sound devices: listing them, resolving `--input-device/--output-device`, and choosing a stream format.

sounddevice (and PortAudio) is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from kame_cli.clock import SAMPLE_RATE
from kame_cli.errors import DeviceError

if TYPE_CHECKING:
    from rich.table import Table

Kind = Literal["input", "output"]
_LIST_HINT = "run `kame devices` to list them"
_FLAG = {"input": "--input-device", "output": "--output-device"}


def portaudio() -> ModuleType:
    """The sounddevice module, or DeviceError when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise DeviceError(
            "the PortAudio library is not installed: install it (Debian/Ubuntu: apt install libportaudio2) "
            "or use --input/--output files"
        ) from exc
    return sounddevice


@dataclass(frozen=True, slots=True)
class AudioDevice:
    """One sound device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool = False
    is_default_output: bool = False

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


def list_devices() -> list[AudioDevice]:
    """Every device PortAudio sees, in index order (empty when there is no sound card)."""
    sd = portaudio()
    host_apis = [api["name"] for api in sd.query_hostapis()]
    default_in, default_out = _default_index(sd, "input"), _default_index(sd, "output")
    return [
        AudioDevice(
            index=int(info["index"]),
            name=str(info["name"]),
            host_api=host_apis[int(info["hostapi"])],
            max_input_channels=int(info["max_input_channels"]),
            max_output_channels=int(info["max_output_channels"]),
            default_samplerate=float(info["default_samplerate"]),
            is_default_input=int(info["index"]) == default_in,
            is_default_output=int(info["index"]) == default_out,
        )
        for info in sd.query_devices()
    ]


def _default_index(sd: ModuleType, kind: Kind) -> int | None:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError):
        # PortAudio has no default device of this kind (no sound card).
        return None


def _is_default(device: AudioDevice, kind: Kind) -> bool:
    return device.is_default_input if kind == "input" else device.is_default_output


def resolve_device(
    spec: str | int | None, kind: Kind, devices: Sequence[AudioDevice] | None = None
) -> int | None:
    """The device index for an index or a case-insensitive name (substring); None for the system default.

    Raises DeviceError when nothing (or more than one device) matches, when the device has no
    channels of `kind`, or when `spec` is None and there is no default device of that kind.
    """
    listed = list_devices() if devices is None else list(devices)
    flag = _FLAG[kind]
    usable = [d for d in listed if d.channels(kind) > 0]
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if not any(_is_default(d, kind) for d in usable):
            alternative = "--input FILE" if kind == "input" else "--output FILE"
            raise DeviceError(
                f"no default {kind} device: connect one and pick it with {flag} ({_LIST_HINT}), "
                f"or use {alternative}"
            )
        return None
    text = str(spec).strip()
    if isinstance(spec, int) or text.isdigit():
        index = int(text)
        match = next((d for d in listed if d.index == index), None)
        if match is None:
            raise DeviceError(
                f"{kind} device {index} does not exist: {_LIST_HINT} and pass an index or a name to {flag}"
            )
        if match.channels(kind) == 0:
            raise DeviceError(
                f"device {index} ('{match.name}') has no {kind} channels: "
                f"{_LIST_HINT} and pick another with {flag}"
            )
        return index
    needle = text.casefold()
    exact = [d for d in usable if d.name.casefold() == needle]
    candidates = exact or [d for d in usable if needle in d.name.casefold()]
    if len(candidates) > 1:
        # The same card can show up under several host APIs: prefer the entry on the default device's API.
        default_api = next((d.host_api for d in usable if _is_default(d, kind)), None)
        preferred = [d for d in candidates if d.host_api == default_api]
        if len(preferred) == 1:
            candidates = preferred
    if len(candidates) == 1:
        return candidates[0].index
    if not candidates:
        other = [d for d in listed if needle in d.name.casefold()]
        if other:
            d = other[0]
            raise DeviceError(
                f"device '{d.name}' ({d.index}) has no {kind} channels: "
                f"{_LIST_HINT} and pick another with {flag}"
            )
        raise DeviceError(
            f"no {kind} device matches '{text}': {_LIST_HINT} and pass an index or a name to {flag}"
        )
    names = ", ".join(f"{d.index}: '{d.name}'" for d in candidates[:6])
    raise DeviceError(
        f"'{text}' matches several {kind} devices ({names}): pass the index to {flag} ({_LIST_HINT})"
    )


def choose_stream_format(
    default_samplerate: float, max_channels: int, accepts: Callable[[int, int], bool]
) -> tuple[int, int]:
    """(rate, channels) to open: 24 kHz if the device accepts it, else its own rate; mono if possible.

    `accepts(rate, channels)` asks the device (PortAudio's format check). Raises DeviceError if
    no candidate is accepted.
    """
    rates = [SAMPLE_RATE] + ([round(default_samplerate)] if round(default_samplerate) != SAMPLE_RATE else [])
    channel_options = [1] + ([2] if max_channels >= 2 else [])
    for channels in channel_options:
        for rate in rates:
            if accepts(rate, channels):
                return rate, channels
    tried = ", ".join(f"{r} Hz" for r in rates)
    raise DeviceError(
        f"the device accepts none of {tried} in mono or stereo float32: {_LIST_HINT} and pick another"
    )


def format_check(index: int | None, kind: Kind) -> Callable[[int, int], bool]:
    """`accepts(rate, channels)`: whether PortAudio takes the device at that rate and channel
    count in float32 (its format check; nothing is opened)."""
    sd = portaudio()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings

    def accepts(rate: int, channels: int) -> bool:
        try:
            check(device=index, samplerate=rate, channels=channels, dtype="float32")
        except sd.PortAudioError:
            return False
        return True

    return accepts


def negotiate_stream_format(index: int | None, kind: Kind, rate: int | None = None) -> tuple[int, int]:
    """(rate, channels) that PortAudio accepts for the device; `rate` forces the device rate."""
    sd = portaudio()
    info = sd.query_devices(index, kind=kind) if index is None else sd.query_devices(index)
    accepts = format_check(index, kind)
    max_channels = int(info[f"max_{kind}_channels"])
    if rate is None:
        return choose_stream_format(float(info["default_samplerate"]), max_channels, accepts)
    for channels in (1, 2)[: max(1, min(2, max_channels))]:
        if accepts(rate, channels):
            return rate, channels
    raise DeviceError(f"the {kind} device does not accept {rate} Hz float32: {_LIST_HINT} and pick another")


def open_stream(
    kind: Kind,
    device: int | None,
    rate: int,
    channels: int,
    callback: Callable[..., None],
    *,
    on_start: Callable[[], None] | None = None,
    **options: Any,
) -> Any:
    """Open and start a float32 PortAudio stream of 80 ms blocks (`on_start` runs just before it
    starts); DeviceError naming the device and the flag that picks another if it refuses."""
    from kame_cli.audio_io.frames import frame_blocksize

    sd = portaudio()
    stream_type = sd.InputStream if kind == "input" else sd.OutputStream
    stream = None
    try:
        # The stream's threads (PortAudio's callback thread at start, a host API's own at open, such
        # as PulseAudio's ALSA plugin) are created with the mask below.
        with _signals_left_to_the_main_thread():
            stream = stream_type(
                device=device,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=frame_blocksize(rate),
                callback=callback,
                **options,
            )
            if on_start is not None:
                on_start()
            stream.start()
    except sd.PortAudioError as exc:
        if stream is not None:
            stream.close()
        name = "(default)" if device is None else str(device)
        raise DeviceError(
            f"cannot open {kind} device {name} at {rate} Hz ({exc}): "
            f"pick another with --{kind}-device (run `kame devices`)"
        ) from exc
    return stream


_FAULTS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
    signal.SIGSYS,
}
"""Signals a thread raises on itself: left unblocked (blocked, a fault would kill the process unseen)."""


@contextlib.contextmanager
def _signals_left_to_the_main_thread() -> Iterator[None]:
    """Threads started inside block every asynchronous signal, so that Ctrl-C, a supervisor's SIGTERM
    or SIGHUP, or SIGCHLD go to a thread that runs Python, never to the audio thread: a signal that
    lands there can cut the write it is blocked in short (Python's handlers do not restart system
    calls). The likely cause of a test's client that once aborted at exit inside alsa-lib's file
    plugin (a virtual card writing into a pipe), which asserts that nothing is left buffered."""
    blocked = signal.valid_signals() - _FAULTS
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def render_devices_table(devices: Sequence[AudioDevice]) -> Table:
    """A Rich table of the devices, marking the defaults (what `kame devices` prints)."""
    from rich.table import Table

    table = Table(
        title="Audio devices", caption="Pick one with --input-device / --output-device (index or name)"
    )
    table.add_column("#", justify="right")
    table.add_column("name")
    table.add_column("host API")
    table.add_column("in", justify="right")
    table.add_column("out", justify="right")
    table.add_column("default rate", justify="right")
    table.add_column("default")
    for d in devices:
        marks = [
            label for label, flag in (("input", d.is_default_input), ("output", d.is_default_output)) if flag
        ]
        table.add_row(
            str(d.index),
            d.name,
            d.host_api,
            str(d.max_input_channels),
            str(d.max_output_channels),
            f"{d.default_samplerate:g} Hz",
            ", ".join(marks),
        )
    if not devices:
        table.caption = "No audio devices found: use --input FILE / --output FILE, or connect a sound card"
    return table
