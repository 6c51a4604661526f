"""Microphone and speaker through real PortAudio streams, on a virtual ALSA sound card (see virtual_alsa)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from tests.audio_io.signals import dominant_frequency, sine
from tests.audio_io.virtual_alsa import VirtualSoundCard

CAPTURE = """
import json, threading, time
import numpy as np
from kame_cli.audio_io import MicrophoneSource
from kame_cli.bus import EventBus

bus = EventBus()
events = bus.subscribe("events")
frames, threads, enough = [], set(), threading.Event()

def on_frame(frame):
    if len(frames) < {count}:
        frames.append(frame)
        threads.add(threading.current_thread() is threading.main_thread())
    else:
        enough.set()

mic = MicrophoneSource({device!r}, device_rate={device_rate!r}, events=bus)
mic.start(on_frame)
got_enough = enough.wait(20)
t = time.monotonic()
mic.stop()
stop_s = time.monotonic() - t
np.save({out!r}, np.stack(frames))
print(json.dumps(dict(
    got_enough=got_enough, device=mic.device, device_rate=mic.device_rate, channels=mic.channels,
    on_main_thread=sorted(threads), overflows=mic.overflows, delivered=mic.frames_delivered,
    ended=mic.wait(0), stop_s=stop_s, events=len(events.drain()), duration=mic.duration_s,
)))
"""

PLAYBACK = """
import json, time
import numpy as np
from kame_cli.audio_io import SpeakerSink
from kame_cli.bus import EventBus

bus = EventBus()
events = bus.subscribe("events")
frames = np.load({frames!r})
speaker = SpeakerSink({device!r}, device_rate={device_rate!r}, events=bus, max_queued_frames=50)
for step, frame in enumerate(frames):  # queued ahead, so they play back to back
    speaker.write(step, frame)
speaker.start()
deadline = time.monotonic() + 20
# Played, and the callback has asked once more (an unclocked card does so at once, but on a busy
# CPU its thread may not have run yet when the last frame is counted).
while (speaker.frames_played < len(frames) or speaker.underruns < 1) and time.monotonic() < deadline:
    time.sleep(0.001)
t = time.monotonic()
speaker.close()
close_s = time.monotonic() - t
xruns = [e for e in events.drain() if e.kind == "output_underrun"]
print(json.dumps(dict(
    device_rate=speaker.device_rate, played=speaker.frames_played, underruns=speaker.underruns,
    published=[e.total for e in xruns], dropped=speaker.dropped_frames, close_s=close_s,
)))
"""


def test_the_virtual_card_is_listed_and_devices_resolve_by_name(tmp_path: Path) -> None:
    card = VirtualSoundCard(tmp_path)
    card.add_microphone("kame_mic", 44100, sine(440, 44100, 1.0))
    card.add_speaker("kame_speaker", 48000)
    result = card.run(
        """
import json
from rich.console import Console
from kame_cli.audio_io import list_devices, render_devices_table, resolve_device, MicrophoneSource
from kame_cli.errors import DeviceError
devices = {d.name: d for d in list_devices()}
console = Console(record=True, width=120)
console.print(render_devices_table(list(devices.values())))
try:
    MicrophoneSource("no such mic")
    error = None
except DeviceError as exc:
    error = str(exc)
print(json.dumps(dict(
    names=sorted(devices), mic_rate=devices["kame_mic"].default_samplerate,
    speaker_out=devices["kame_speaker"].max_output_channels, host=devices["kame_mic"].host_api,
    by_name=resolve_device("KAME_MIC", "input"), by_part=resolve_device("speak", "output"),
    mic_index=devices["kame_mic"].index, speaker_index=devices["kame_speaker"].index,
    default=resolve_device(None, "input"), table=console.export_text(), error=error,
)))
"""
    )
    assert {"kame_mic", "kame_speaker"} <= set(result["names"])
    assert result["mic_rate"] == 44100.0 and result["host"] == "ALSA" and result["speaker_out"] > 0
    assert result["by_name"] == result["mic_index"] and result["by_part"] == result["speaker_index"]
    assert result["default"] is None
    assert "kame_mic" in result["table"] and "44100 Hz" in result["table"]
    assert "no input device matches 'no such mic'" in result["error"] and "\n" not in result["error"]


@pytest.mark.parametrize(("card_rate", "device_rate"), [(24000, None), (44100, 44100), (48000, 48000)])
def test_microphone_frames_carry_the_recorded_signal(
    tmp_path: Path, card_rate: int, device_rate: int | None
) -> None:
    card = VirtualSoundCard(tmp_path)
    recorded = sine(440, card_rate, 3.0)
    card.add_microphone("kame_mic", card_rate, recorded)
    out = tmp_path / "frames.npy"
    result = card.run(CAPTURE.format(count=20, device="kame_mic", device_rate=device_rate, out=str(out)))

    assert result["got_enough"] and result["device_rate"] == card_rate and result["channels"] == 1
    assert result["on_main_thread"] == [False]  # delivered from PortAudio's callback thread
    assert result["overflows"] == 0 and result["events"] == 0
    assert result["delivered"] >= 20 and result["ended"] is False and result["duration"] is None
    assert result["stop_s"] < 1.0
    frames = np.load(out)
    assert frames.shape == (20, FRAME_SAMPLES) and frames.dtype == np.float32
    audio = frames.reshape(-1)
    assert dominant_frequency(audio[:24000], SAMPLE_RATE) == pytest.approx(440, abs=1)
    ideal = sine(440, SAMPLE_RATE, 1.0)
    if device_rate is None:
        # At 24 kHz nothing is resampled: the very samples the card recorded.
        np.testing.assert_allclose(audio[:24000], ideal, atol=1e-6)
    else:
        np.testing.assert_allclose(audio[1000:24000], ideal[1000:24000], atol=1e-3)


def test_an_exception_in_on_frame_ends_capture_quietly_and_is_kept(tmp_path: Path) -> None:
    card = VirtualSoundCard(tmp_path)
    card.add_microphone("kame_mic", 24000, sine(440, 24000, 1.0))
    result = card.run(
        """
import json
from kame_cli.audio_io import MicrophoneSource
count = [0]

def on_frame(frame):
    count[0] += 1
    if count[0] == 5:
        raise RuntimeError("consumer broke")

mic = MicrophoneSource("kame_mic")
mic.start(on_frame)
ended = mic.wait(10)
mic.stop()
print(json.dumps(dict(ended=ended, error=repr(mic.error), count=count[0], delivered=mic.frames_delivered)))
"""
    )
    assert result["ended"] is True
    assert result["error"] == "RuntimeError('consumer broke')"
    # The failing block is the last one taken: the stream ended there.
    assert result["count"] == 5 and result["delivered"] == 4
    assert "Traceback" not in card.stderr, card.stderr


def _cosine_frames(count: int) -> np.ndarray:
    tone = (0.5 * np.cos(2 * np.pi * 1000 * np.arange(count * FRAME_SAMPLES) / SAMPLE_RATE)).astype(
        np.float32
    )
    return tone.reshape(count, FRAME_SAMPLES)


def _play_tone(
    tmp_path: Path, card_rate: int, device_rate: int | None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Ten frames of a 1 kHz tone played to a speaker whose card runs at `card_rate`: (what the
    playback code reported, the frames, what the card heard)."""
    card = VirtualSoundCard(tmp_path)
    played_file = card.add_speaker("kame_speaker", card_rate)
    frames = _cosine_frames(10)
    np.save(tmp_path / "frames.npy", frames)
    result = card.run(
        PLAYBACK.format(frames=str(tmp_path / "frames.npy"), device="kame_speaker", device_rate=device_rate)
    )
    return result, frames, np.fromfile(played_file, dtype="<f4")


def test_speaker_plays_the_frames_exactly_then_silence_counting_underruns(tmp_path: Path) -> None:
    result, frames, heard = _play_tone(tmp_path, 24000, None)
    assert result["device_rate"] == 24000 and result["played"] == 10 and result["dropped"] == 0
    # The virtual card is not clocked: it asks for more right after the last frame, so it underruns.
    assert result["underruns"] >= 1 and result["published"] == list(range(1, result["underruns"] + 1))
    assert result["close_s"] < 1.0
    start = int(np.flatnonzero(heard)[0])
    np.testing.assert_array_equal(heard[start : start + 10 * FRAME_SAMPLES], frames.reshape(-1))
    assert np.all(heard[:start] == 0) and np.all(heard[start + 10 * FRAME_SAMPLES :] == 0)


def test_speaker_resamples_for_a_card_that_runs_at_48k(tmp_path: Path) -> None:
    result, _, heard = _play_tone(tmp_path, 48000, 48000)
    assert result["device_rate"] == 48000 and result["played"] == 10
    # PortAudio primes the card with whole blocks of silence (3840 samples at 48 kHz), then the tone.
    start = int(np.flatnonzero(np.abs(heard) > 1e-3)[0])
    assert start % 3840 == 0
    ideal = (0.5 * np.cos(2 * np.pi * 1000 * np.arange(10 * 2 * FRAME_SAMPLES) / 48000)).astype(np.float32)
    # 0.8 s of tone at 48 kHz, sample-aligned (the resampler's filter blurs the edges).
    np.testing.assert_allclose(heard[start + 200 : start + 38000], ideal[200:38000], atol=1e-3)
    assert dominant_frequency(heard[start : start + 38000], 48000) == pytest.approx(1000, abs=2)


THREAD_MASKS = """
import json, os, signal, threading
import numpy as np
from kame_cli.audio_io import MicrophoneSource, SpeakerSink

def blocked():
    masks = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as status:
            line = next(l for l in status if l.startswith("SigBlk:"))
        masks[int(tid)] = {s.name for s in signal.Signals if int(line.split()[1], 16) >> (s.value - 1) & 1}
    return masks

before = blocked()
got, speaker = threading.Event(), SpeakerSink("kame_speaker", events=None)
mic = MicrophoneSource("kame_mic")
mic.start(lambda frame: got.set())
speaker.start()
speaker.write(0, np.zeros(1920, dtype=np.float32))
assert got.wait(20)
after = blocked()
mic.stop()
speaker.close()
print(json.dumps(dict(
    audio=[sorted(after[t]) for t in set(after) - set(before)],
    main=sorted(after[threading.get_native_id()]), main_before=sorted(before[threading.get_native_id()]),
)))
"""


def test_signals_sent_to_kame_never_land_in_portaudios_threads(tmp_path: Path) -> None:
    """Ctrl-C or a supervisor's SIGTERM delivered to an audio thread can cut its blocking write short;
    they go to the main thread instead (the old code left PortAudio's threads open to them)."""
    card = VirtualSoundCard(tmp_path)
    card.add_microphone("kame_mic", 24000, sine(440, 24000, 2.0))
    card.add_speaker("kame_speaker", 24000)
    result = card.run(THREAD_MASKS)
    assert result["audio"], "the streams started no thread of their own"
    for mask in result["audio"]:
        assert {"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGCHLD", "SIGUSR1"} <= set(mask)
        assert not {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGABRT", "SIGSYS"} & set(mask)
    # The caller's own mask is left as it was (PortAudio's ALSA code blocks SIGPIPE in it, either way).
    assert not {"SIGINT", "SIGTERM", "SIGHUP", "SIGCHLD"} & {*result["main_before"], *result["main"]}
