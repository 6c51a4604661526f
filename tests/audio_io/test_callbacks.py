"""The sound-card callbacks driven block by block with what PortAudio passes: arrays and CallbackFlags."""

from __future__ import annotations

import numpy as np
import pytest
import sounddevice

from kame_cli.audio_io import SampleFifo
from kame_cli.audio_io.callbacks import CaptureCallback, PlaybackCallback
from kame_cli.bus import EventBus
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE, SessionClock
from kame_cli.events import AudioXrun
from tests.audio_io.signals import dominant_frequency, sine


def _flags(**set_flags: bool) -> sounddevice.CallbackFlags:
    flags = sounddevice.CallbackFlags()
    for name, value in set_flags.items():
        setattr(flags, name, value)
    return flags


def test_capture_at_24k_hands_over_each_block_as_one_frame_copy() -> None:
    got: list[np.ndarray] = []
    capture = CaptureCallback(SAMPLE_RATE, got.append)
    block = np.zeros((FRAME_SAMPLES, 1), dtype=np.float32)
    for k in range(3):
        block[:, 0] = k + 1  # PortAudio reuses its buffer between callbacks
        capture(block, FRAME_SAMPLES, None, _flags())
    assert [float(f[0]) for f in got] == [1.0, 2.0, 3.0]
    assert capture.frames_delivered == 3 and capture.overflows == 0


def test_capture_resamples_and_reblocks_odd_device_blocks_into_frames() -> None:
    rate = 44100
    signal = sine(440, rate, 2.0)
    stereo = np.stack([signal, signal], axis=1)
    got: list[np.ndarray] = []
    capture = CaptureCallback(rate, got.append)
    position = 0
    for size in [1000, 3528, 17, 4096, 512] * 12:  # device blocks of any size
        if position + size > stereo.shape[0]:
            break
        capture(stereo[position : position + size], size, None, _flags())
        position += size

    assert got and all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.float32 for f in got)
    audio = np.concatenate(got)
    expected_samples = position * SAMPLE_RATE / rate
    # Everything but the resampler's filter delay (a few ms) and the unfinished last frame came out.
    assert expected_samples - FRAME_SAMPLES - 500 <= audio.shape[0] <= expected_samples
    assert dominant_frequency(audio[:24000], SAMPLE_RATE) == pytest.approx(440, abs=1)
    ideal = sine(440, SAMPLE_RATE, audio.shape[0] / SAMPLE_RATE)
    assert np.max(np.abs(audio[1000:] - ideal[1000:])) < 1e-3


def test_input_overflow_is_counted_and_published() -> None:
    bus = EventBus()
    xruns = bus.subscribe("xruns")
    clock = SessionClock()
    capture = CaptureCallback(SAMPLE_RATE, lambda f: None, clock=clock, events=bus)
    block = np.zeros((FRAME_SAMPLES, 1), dtype=np.float32)
    capture(block, FRAME_SAMPLES, None, _flags(input_overflow=True))
    capture(block, FRAME_SAMPLES, None, _flags())
    capture(block, FRAME_SAMPLES, None, _flags(input_overflow=True))

    assert capture.overflows == 2
    events = xruns.drain()
    assert [(e.kind, e.total) for e in events if isinstance(e, AudioXrun)] == [
        ("input_overflow", 1),
        ("input_overflow", 2),
    ]
    assert 0 <= events[0].t <= events[1].t <= clock.now()
    assert capture.frames_delivered == 3  # the audio of an overflowing block is still delivered


def _pull(playback: PlaybackCallback, frames: int, channels: int = 1, **flags: bool) -> np.ndarray:
    out = np.full((frames, channels), 9.0, dtype=np.float32)  # garbage a callback must overwrite
    playback(out, frames, None, _flags(**flags))
    return out


def test_playback_plays_queued_frames_then_silence_counting_each_underrun() -> None:
    bus = EventBus()
    xruns = bus.subscribe("xruns")
    playback = PlaybackCallback(SAMPLE_RATE, events=bus)
    # Before anything is queued the stream plays silence and that is not an underrun.
    assert np.all(_pull(playback, FRAME_SAMPLES) == 0) and playback.underruns == 0

    frames = [np.full(FRAME_SAMPLES, 0.1 * (k + 1), dtype=np.float32) for k in range(2)]
    for frame in frames:
        playback.enqueue(frame)
    np.testing.assert_array_equal(_pull(playback, FRAME_SAMPLES)[:, 0], frames[0])
    np.testing.assert_array_equal(_pull(playback, FRAME_SAMPLES)[:, 0], frames[1])
    assert playback.underruns == 0 and playback.idle

    assert np.all(_pull(playback, FRAME_SAMPLES) == 0)
    assert np.all(_pull(playback, FRAME_SAMPLES) == 0)
    assert playback.underruns == 2
    assert [(e.kind, e.total) for e in xruns.drain()] == [("output_underrun", 1), ("output_underrun", 2)]


def test_a_half_filled_block_is_completed_with_silence_and_counted() -> None:
    playback = PlaybackCallback(SAMPLE_RATE)
    playback.enqueue(np.ones(FRAME_SAMPLES, dtype=np.float32))
    out = _pull(playback, FRAME_SAMPLES + 480, channels=2)  # a device asking for more than one frame
    assert np.all(out[:FRAME_SAMPLES] == 1.0) and np.all(out[FRAME_SAMPLES:] == 0.0)
    assert playback.underruns == 1


def test_portaudio_output_underflow_flag_counts_too() -> None:
    playback = PlaybackCallback(SAMPLE_RATE)
    for _ in range(2):
        playback.enqueue(np.ones(FRAME_SAMPLES, dtype=np.float32))
    _pull(playback, FRAME_SAMPLES, output_underflow=True)
    assert playback.underruns == 1


def test_prebuffer_holds_playback_until_enough_frames_are_queued() -> None:
    playback = PlaybackCallback(SAMPLE_RATE, prebuffer_frames=2)
    playback.enqueue(np.ones(FRAME_SAMPLES, dtype=np.float32))
    assert np.all(_pull(playback, FRAME_SAMPLES) == 0) and not playback.started
    playback.enqueue(np.ones(FRAME_SAMPLES, dtype=np.float32))
    assert np.all(_pull(playback, FRAME_SAMPLES) == 1.0) and playback.started
    assert playback.underruns == 0


def test_draining_at_the_end_is_not_an_underrun() -> None:
    playback = PlaybackCallback(SAMPLE_RATE)
    playback.enqueue(np.ones(FRAME_SAMPLES, dtype=np.float32))
    _pull(playback, FRAME_SAMPLES)
    playback.draining = True
    assert np.all(_pull(playback, FRAME_SAMPLES) == 0)
    assert playback.underruns == 0


def test_a_full_queue_drops_the_oldest_frames_and_counts_them() -> None:
    playback = PlaybackCallback(SAMPLE_RATE, max_queued_frames=3)
    for k in range(5):
        playback.enqueue(np.full(FRAME_SAMPLES, float(k), dtype=np.float32))
    assert playback.dropped_frames == 2
    assert [float(_pull(playback, FRAME_SAMPLES)[0, 0]) for _ in range(3)] == [2.0, 3.0, 4.0]


def test_playback_resamples_to_the_device_rate_and_fills_every_channel() -> None:
    rate = 48000
    signal = sine(1000, SAMPLE_RATE, 1.2)
    playback = PlaybackCallback(rate, max_queued_frames=100)
    for k in range(signal.shape[0] // FRAME_SAMPLES):
        playback.enqueue(signal[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES])
    blocks = [_pull(playback, 3840, channels=2) for _ in range(12)]

    out = np.concatenate(blocks)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    # It takes only what the device asked for (plus the resampler's filter delay); the rest stays queued.
    assert 12 <= playback.frames_taken <= 13 and playback.underruns == 0
    assert dominant_frequency(out[:48000, 0], rate) == pytest.approx(1000, abs=1)
    ideal = sine(1000, rate, 1.0)
    assert np.max(np.abs(out[500:46000, 0] - ideal[500:46000])) < 1e-3


def test_sample_fifo_keeps_order_across_growth_and_compaction() -> None:
    fifo = SampleFifo(capacity=8)
    signal = np.arange(50_000, dtype=np.float32)
    out: list[np.ndarray] = []
    position = 0
    for size in [3, 5000, 7, 20_000, 1, 24_989]:
        fifo.push(signal[position : position + size])
        position += size
        out.append(fifo.pop(len(fifo) // 2 + 1))
    out.append(fifo.pop(len(fifo)))
    np.testing.assert_array_equal(np.concatenate(out), signal)
    assert len(fifo) == 0
