"""FileSource: any WAV becomes exact 24 kHz mono frames, fed at real-time pace or flat out."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kame_cli.audio_io import FileSource
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, SessionClock
from kame_cli.errors import AudioFileError
from tests.audio_io.signals import dominant_frequency, rms, sine


def _write(
    path: Path, rate: int, channels: int, subtype: str, seconds: float, freq: float = 440.0
) -> np.ndarray:
    mono = sine(freq, rate, seconds)
    soundfile.write(path, np.stack([mono] * channels, axis=1), rate, subtype=subtype)
    return mono


@pytest.mark.parametrize(
    ("rate", "channels", "subtype", "tolerance"),
    [
        (24000, 1, "PCM_16", 1e-4),
        (44100, 2, "PCM_16", 1e-3),
        (48000, 6, "PCM_24", 1e-3),
        (16000, 1, "PCM_32", 1e-3),
        (22050, 2, "FLOAT", 1e-3),
        (8000, 1, "PCM_U8", 2e-2),  # 8-bit WAV is unsigned: quantisation noise of ~1/256
        (32000, 2, "DOUBLE", 1e-3),
    ],
)
def test_any_wav_becomes_24k_mono_frames_with_the_same_signal(
    tmp_path: Path, rate: int, channels: int, subtype: str, tolerance: float
) -> None:
    path = tmp_path / f"in-{rate}-{channels}-{subtype}.wav"
    _write(path, rate, channels, subtype, seconds=1.3)

    source = FileSource(path, paced=False)
    frames = list(source.frames())

    # 1.3 s at 24 kHz is 31200 samples: 16.25 frames, so 17 with the last one padded.
    assert source.total_samples == 31200
    assert len(frames) == source.frame_count == 17
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.float32 for f in frames)
    audio = np.concatenate(frames)
    assert np.all(audio[31200:] == 0.0)
    assert dominant_frequency(audio[:24000], SAMPLE_RATE) == pytest.approx(440, abs=1)
    # Time-aligned with the ideal 24 kHz sine (away from the filter's edges at both ends).
    ideal = sine(440, SAMPLE_RATE, 1.3)
    assert np.max(np.abs(audio[600:30600] - ideal[600:30600])) < tolerance
    assert source.duration_s == pytest.approx(1.3, abs=1 / rate)


def test_channels_are_averaged_not_just_the_first_taken(tmp_path: Path) -> None:
    rate = 24000
    left = sine(300, rate, 1.0)
    right = sine(1000, rate, 1.0, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")

    audio = np.concatenate(list(FileSource(path, paced=False).frames()))[:24000]

    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)


def test_fast_feed_delivers_every_frame_in_order_from_its_thread(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    _write(path, 16000, 1, "PCM_16", seconds=4.0)
    expected = list(FileSource(path, paced=False).frames())
    got: list[np.ndarray] = []
    threads: set[str] = set()

    def on_frame(frame: np.ndarray) -> None:
        got.append(frame)
        threads.add(threading.current_thread().name)

    source = FileSource(path, paced=False)
    started = time.monotonic()
    source.start(on_frame)
    assert source.wait(timeout=10.0) is True
    elapsed = time.monotonic() - started
    source.stop()

    assert source.frames_delivered == len(got) == len(expected) == 50
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert threads == {"kame-file-source"}
    assert source.error is None
    # 4 s of audio is not held back to real time (a generous bound for a loaded CPU).
    assert elapsed < 2.0


def test_paced_feed_delivers_each_frame_at_its_real_time_deadline(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    _write(path, 48000, 2, "PCM_16", seconds=1.2)
    times: list[float] = []
    clock = SessionClock()
    source = FileSource(path, paced=True, clock=clock)

    t0 = time.monotonic()
    source.start(lambda frame: times.append(time.monotonic()))
    assert source.wait(timeout=10.0) is True
    source.stop()

    assert len(times) == source.frame_count == 15
    assert source.started_at is not None and 0.0 <= source.started_at <= clock.at(t0) + 0.5
    # No frame comes before the moment its last sample would have been spoken.
    deadlines = [t0 + (k + 1) * FRAME_SECONDS for k in range(15)]
    assert all(t >= d - 0.005 for t, d in zip(times, deadlines, strict=True))
    # And the whole feed takes about the audio's length (generous upper bound under CPU contention).
    assert 15 * FRAME_SECONDS - 0.01 <= times[-1] - t0 < 15 * FRAME_SECONDS + 1.0


def test_stop_ends_a_paced_feed_early_and_wait_reports_not_exhausted(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    _write(path, 24000, 1, "PCM_16", seconds=20.0)
    source = FileSource(path, paced=True)
    source.start(lambda frame: None)
    time.sleep(0.3)

    t = time.monotonic()
    source.stop()
    assert time.monotonic() - t < 1.0
    assert source.wait(timeout=0) is False
    assert 0 < source.frames_delivered < source.frame_count


def test_an_exception_in_on_frame_ends_the_feed_and_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    _write(path, 24000, 1, "PCM_16", seconds=1.0)
    source = FileSource(path, paced=False)

    def on_frame(frame: np.ndarray) -> None:
        if source.frames_delivered == 3:
            raise RuntimeError("consumer broke")

    hook_calls: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, hook_calls.append
    try:
        source.start(on_frame)
        assert source.wait(timeout=5.0) is True
        source.stop()
    finally:
        threading.excepthook = previous
    assert isinstance(source.error, RuntimeError)
    assert source.frames_delivered == 3
    assert hook_calls == [], "the feeder keeps the error for the session; it prints no traceback"


def test_a_file_that_stops_decoding_part_way_ends_the_feed_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    _write(path, 24000, 1, "PCM_16", seconds=4.0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download cut short
    source = FileSource(path, paced=False)  # the header is intact: it opens
    got: list[np.ndarray] = []

    hook_calls: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, hook_calls.append
    try:
        source.start(got.append)
        assert source.wait(timeout=5.0) is True
        source.stop()
    finally:
        threading.excepthook = previous
    assert isinstance(source.error, AudioFileError) and hook_calls == []
    message = _one_line(source.error)
    assert str(path) in message and "cannot be decoded past" in message
    assert 0 < len(got) < source.frame_count


def _one_line(err: AudioFileError) -> str:
    message = str(err)
    assert "\n" not in message
    return message


def test_a_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError) as info:
        FileSource(missing)
    message = _one_line(info.value)
    assert str(missing) in message and "does not exist" in message and "WAV" in message


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError) as info:
        FileSource(tmp_path)
    assert "is a directory" in _one_line(info.value)


@pytest.mark.parametrize(
    "content",
    [b"this is not audio at all\n" * 20, b"RIFF\x24\x00\x00\x00WAVEfmt ", b""],
    ids=["text", "truncated-header", "empty-file"],
)
def test_a_non_audio_file_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as info:
        FileSource(path)
    message = _one_line(info.value)
    assert str(path) in message and "cannot be read as audio" in message


def test_a_wav_without_samples_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    soundfile.write(path, np.zeros((0, 1), dtype=np.float32), 24000, subtype="PCM_16")
    with pytest.raises(AudioFileError) as info:
        FileSource(path)
    assert "holds no audio" in _one_line(info.value)


def test_frame_count_rounds_up_to_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "exact.wav"
    # Exactly 5 frames at 24 kHz after resampling 44.1 kHz.
    _write(path, 44100, 1, "PCM_16", seconds=5 * FRAME_SECONDS)
    source = FileSource(path, paced=False)
    assert source.frame_count == 5 == len(list(source.frames()))
    assert math.isclose(
        rms(np.concatenate(list(FileSource(path, paced=False).frames()))[200:-200]),
        0.5 / 2**0.5,
        rel_tol=1e-2,
    )


def test_a_file_shorter_than_a_frame_gives_one_padded_frame(tmp_path: Path) -> None:
    path = tmp_path / "click.wav"
    soundfile.write(path, np.full(100, 0.5, dtype=np.float32), 8000, subtype="FLOAT")
    source = FileSource(path, paced=False)
    frames = list(source.frames())
    assert source.total_samples == 300 and len(frames) == source.frame_count == 1
    assert np.all(frames[0][400:] == 0) and np.max(frames[0][:300]) > 0.4
