"""WavSink: a valid WAV at every moment, frames placed by index, user/assistant aligned in stereo."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kame_cli.audio_io import TeeSink, WavSink
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from kame_cli.errors import AudioFileError
from tests.audio_io.signals import sine
from tests.support.python import REPO_ROOT


def _frames(freq: float, count: int, amplitude: float = 0.5) -> list[np.ndarray]:
    audio = sine(freq, SAMPLE_RATE, count * FRAME_SAMPLES / SAMPLE_RATE, amplitude)
    return [audio[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] for k in range(count)]


def test_mono_file_holds_the_assistant_frames_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    frames = _frames(440, 12)
    sink = WavSink(path)
    sink.start()
    for step, frame in enumerate(frames):
        sink.write(step, frame)
    sink.close()

    data, rate = soundfile.read(path, dtype="float32")
    info = soundfile.info(path)
    assert (rate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert data.shape == (12 * FRAME_SAMPLES,)
    np.testing.assert_allclose(data, np.concatenate(frames), atol=1 / 32767 + 1e-6)
    assert sink.frames_written == 12 and sink.late_frames == 0


def test_missing_steps_become_silence_and_late_ones_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gaps.wav"
    a, b, c = _frames(440, 3)
    sink = WavSink(path)
    sink.start()
    sink.write(0, a)
    sink.write(3, b)  # steps 1 and 2 never come
    sink.close()  # flushes the writer, so the late frame below cannot be placed anymore
    data, _ = soundfile.read(path, dtype="float32")
    assert data.shape == (4 * FRAME_SAMPLES,)
    assert np.all(data[FRAME_SAMPLES : 3 * FRAME_SAMPLES] == 0)
    np.testing.assert_allclose(data[3 * FRAME_SAMPLES :], b, atol=1e-4)

    late = WavSink(tmp_path / "late.wav")
    late.start()
    late.write(0, a)
    late.write(1, b)
    deadline = time.monotonic() + 5
    while late.frames_written < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    late.write(1, c)
    late.close()
    assert late.late_frames == 1
    data, _ = soundfile.read(tmp_path / "late.wav", dtype="float32")
    np.testing.assert_allclose(data[FRAME_SAMPLES:], b, atol=1e-4)


def test_stereo_aligns_user_left_and_assistant_right_by_frame_index(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    user = _frames(300, 10)
    assistant = _frames(1000, 10, amplitude=0.25)
    sink = WavSink(path, stereo=True)
    sink.start()
    # The assistant lags the user by three frames, as a front-end step behind its input would.
    for k in range(10):
        sink.write_user(k, user[k])
        if k >= 3:
            sink.write(k - 3, assistant[k - 3])
    for k in range(7, 10):
        sink.write(k, assistant[k])
    sink.close()

    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE and data.shape == (10 * FRAME_SAMPLES, 2)
    np.testing.assert_allclose(data[:, 0], np.concatenate(user), atol=1e-4)
    np.testing.assert_allclose(data[:, 1], np.concatenate(assistant), atol=1e-4)


def test_stereo_writes_silence_for_a_side_that_falls_too_far_behind(tmp_path: Path) -> None:
    path = tmp_path / "skew.wav"
    user = _frames(300, 8)
    sink = WavSink(path, stereo=True, max_skew_s=0.25)  # about three frames
    sink.start()
    for k in range(8):
        sink.write_user(k, user[k])
    deadline = time.monotonic() + 5
    while sink.frames_written < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Frames already written with a silent right channel cannot take the late assistant audio.
    assert sink.frames_written >= 4
    sink.write(0, _frames(1000, 1)[0])
    sink.close()
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    assert data.shape == (8 * FRAME_SAMPLES, 2)
    np.testing.assert_allclose(data[:, 0], np.concatenate(user), atol=1e-4)
    assert np.all(data[:, 1] == 0) and sink.late_frames == 1


def test_mono_sink_ignores_user_frames(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "m.wav")
    sink.start()
    sink.write_user(0, _frames(300, 1)[0])
    sink.write(0, _frames(440, 1)[0])
    sink.close()
    assert soundfile.info(tmp_path / "m.wav").frames == FRAME_SAMPLES


def test_close_without_start_still_leaves_a_valid_wav(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "never.wav")
    sink.write(0, _frames(440, 1)[0])
    sink.close()
    sink.close()  # idempotent
    assert soundfile.info(tmp_path / "never.wav").frames == FRAME_SAMPLES


def test_clipping_instead_of_wrapping(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "loud.wav")
    sink.start()
    sink.write(0, np.full(FRAME_SAMPLES, 3.0, dtype=np.float32))
    sink.write(1, np.full(FRAME_SAMPLES, -3.0, dtype=np.float32))
    sink.close()
    data, _ = soundfile.read(tmp_path / "loud.wav", dtype="int16")
    assert np.all(data[:FRAME_SAMPLES] == 32767) and np.all(data[FRAME_SAMPLES:] == -32767)


def test_a_frame_of_the_wrong_length_is_a_caller_bug(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "x.wav")
    with pytest.raises(ValueError, match="1920"):
        sink.write(0, np.zeros(100, dtype=np.float32))
    sink.close()


def test_private_files_are_user_only_and_others_follow_the_umask(tmp_path: Path) -> None:
    private = tmp_path / "log.wav"
    private.write_bytes(b"old")
    os.chmod(private, 0o644)
    sink = WavSink(private, private=True)
    sink.start()
    sink.close()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600

    previous = os.umask(0o027)
    try:
        sink = WavSink(tmp_path / "out.wav")
        sink.start()
        sink.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.wav").stat().st_mode) == 0o640


def test_an_unwritable_path_is_refused_in_one_line(tmp_path: Path) -> None:
    for target in (tmp_path / "no" / "such" / "dir" / "out.wav", tmp_path):
        with pytest.raises(AudioFileError) as info:
            WavSink(target)
        message = str(info.value)
        assert "\n" not in message and str(target) in message and "writable" in message


def test_an_existing_file_is_only_replaced_once_the_sink_starts(tmp_path: Path) -> None:
    path = tmp_path / "take.wav"
    path.write_bytes(b"the previous recording")
    never_started = WavSink(path)  # e.g. the session failed to load a model after this
    never_started.close()
    assert path.read_bytes() == b"the previous recording"

    sink = WavSink(path)
    assert path.read_bytes() == b"the previous recording"
    sink.start()
    info = soundfile.info(path)  # truncated to a valid, empty WAV at once
    assert (info.frames, info.samplerate) == (0, SAMPLE_RATE)
    sink.write(0, _frames(440, 1)[0])
    sink.close()
    assert soundfile.info(path).frames == FRAME_SAMPLES


def test_a_killed_writer_still_leaves_a_readable_wav(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    code = f"""
import sys, time
import numpy as np
from kame_cli.audio_io import WavSink
sink = WavSink({str(path)!r}, stereo=True)
sink.start()
k = 0
while True:
    sink.write_user(k, np.full(1920, 0.25, dtype=np.float32))
    sink.write(k, np.full(1920, -0.25, dtype=np.float32))
    k += 1
    if sink.frames_written >= 20:
        print("written", flush=True)
    time.sleep(0.005)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE and data.shape[0] >= 20 * FRAME_SAMPLES and data.shape[0] % FRAME_SAMPLES == 0
    np.testing.assert_allclose(data[:, 0], 0.25, atol=1e-4)
    np.testing.assert_allclose(data[:, 1], -0.25, atol=1e-4)


class _BrokenSink:
    def __init__(self) -> None:
        self.closed = False

    def start(self) -> None:
        return None

    def write(self, step: int, pcm: np.ndarray) -> None:
        return None

    def close(self) -> None:
        self.closed = True
        raise AudioFileError("disk full")


def test_tee_writes_to_every_sink_and_closes_all_even_when_one_fails(tmp_path: Path) -> None:
    mono = WavSink(tmp_path / "voice.wav")
    stereo = WavSink(tmp_path / "both.wav", stereo=True)
    broken = _BrokenSink()
    tee = TeeSink(broken, mono, stereo)
    tee.start()
    user, assistant = _frames(300, 4), _frames(1000, 4)
    for k in range(4):
        stereo.write_user(k, user[k])  # the user's channel is written by its recorder, not the tee
        tee.write(k, assistant[k])
    with pytest.raises(AudioFileError, match="disk full"):
        tee.close()

    assert broken.closed
    voice, _ = soundfile.read(tmp_path / "voice.wav", dtype="float32")
    both, _ = soundfile.read(tmp_path / "both.wav", dtype="float32", always_2d=True)
    np.testing.assert_allclose(voice, np.concatenate(assistant), atol=1e-4)
    np.testing.assert_allclose(both[:, 0], np.concatenate(user), atol=1e-4)
    np.testing.assert_allclose(both[:, 1], np.concatenate(assistant), atol=1e-4)
