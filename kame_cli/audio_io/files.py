"""Audio files as a frame source: any WAV (rate, channels, bit depth), fed at real-time pace or flat out."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from kame_cli.audio_io.frames import FrameCallback, downmix
from kame_cli.audio_io.resampling import StreamResampler
from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, SessionClock
from kame_cli.errors import AudioFileError

_FIX = "give a WAV file (any sample rate, channel count or bit depth)"


def open_audio_file(path: str | os.PathLike[str]) -> soundfile.SoundFile:
    """Opens an audio file for reading, or raises AudioFileError naming the file and the fix."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"input audio file '{p}' does not exist: check the path ({_FIX})")
    if p.is_dir():
        raise AudioFileError(f"input audio file '{p}' is a directory: {_FIX}")
    try:
        sound = soundfile.SoundFile(str(p), mode="r")
    except (soundfile.LibsndfileError, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise AudioFileError(f"input audio file '{p}' cannot be read as audio ({reason}): {_FIX}") from exc
    if sound.frames <= 0:
        sound.close()
        raise AudioFileError(f"input audio file '{p}' holds no audio samples: {_FIX}")
    return sound


class FileSource:
    """Feeds an audio file as 24 kHz mono frames from its own thread; the last frame is padded with zeros."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        paced: bool = True,
        clock: SessionClock | None = None,
        join_timeout_s: float = 1.0,
        channel: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.paced = paced
        self._clock = clock or SessionClock()
        self._join_timeout_s = join_timeout_s
        # Opened here so that a bad file fails before anything starts.
        self._sound = open_audio_file(self.path)
        self.source_rate = int(self._sound.samplerate)
        self.source_channels = int(self._sound.channels)
        self.channel = channel
        """[aec] Read this channel alone (a recorded session: 0 the user, 1 the assistant); None: downmix."""
        if channel is not None and not 0 <= channel < self.source_channels:
            self._sound.close()
            raise AudioFileError(
                f"input audio file '{self.path}' has {self.source_channels} channel(s), "
                f"no channel {channel + 1}: give a two-channel recording (user left, assistant right)"
            )
        self._source_frames = int(self._sound.frames)
        # Trimming/padding the resampled stream to this count makes the frame count exact.
        self.total_samples = round(self._source_frames * SAMPLE_RATE / self.source_rate)
        self.frame_count = math.ceil(self.total_samples / FRAME_SAMPLES)
        self._delivered = 0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._exhausted = False
        self._error: BaseException | None = None
        self.started_at: float | None = None
        """Session time at which feeding started (frame k is due (k + 1) frame periods later when paced)."""

    @property
    def frames_delivered(self) -> int:
        return self._delivered

    @property
    def duration_s(self) -> float:
        return self._source_frames / self.source_rate

    @property
    def error(self) -> BaseException | None:
        """What ended the feed early: an AudioFileError if decoding failed, or what `on_frame` raised."""
        return self._error

    def start(self, on_frame: FrameCallback) -> None:
        """Starts feeding. `on_frame` runs on the feeder thread; if it blocks, pacing catches up after."""
        if self._thread is not None:
            raise RuntimeError("FileSource.start() was already called")
        self._thread = threading.Thread(
            target=self._feed, args=(on_frame,), name="kame-file-source", daemon=False
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops feeding and joins the feeder thread (bounded)."""
        self._stop.set()
        if self._thread is None:
            self._sound.close()
        elif self._thread is not threading.current_thread():
            self._thread.join(self._join_timeout_s)

    def wait(self, timeout: float | None = None) -> bool:
        """True once the whole file was delivered (or feeding failed: see `error`); False on timeout/stop."""
        self._done.wait(timeout)
        return self._done.is_set() and (self._exhausted or self._error is not None)

    def frames(self) -> Iterator[np.ndarray]:
        """The frames `start` would feed, decoded and resampled block by block (iterate instead of start).

        A file that cannot be decoded part-way (a truncated FLAC, say) raises AudioFileError.
        """
        resampler = StreamResampler(self.source_rate, SAMPLE_RATE)
        block = max(1, math.ceil(FRAME_SAMPLES * self.source_rate / SAMPLE_RATE))
        pending = np.zeros(0, dtype=np.float32)
        produced = 0
        self._sound.seek(0)
        while produced < self.total_samples:
            raw = self._read(block, produced)
            at_end = raw.shape[0] == 0
            mono = downmix(raw) if self.channel is None else raw[:, self.channel]
            tail = resampler.flush() if at_end else resampler.process(mono)
            pending = np.concatenate((pending, tail)) if pending.size else tail
            if at_end:
                # The resampler may come up a few samples short of the exact length: pad with silence.
                missing = self.total_samples - produced - pending.shape[0]
                if missing > 0:
                    pending = np.concatenate((pending, np.zeros(missing, dtype=np.float32)))
            while pending.shape[0] >= FRAME_SAMPLES or (at_end and pending.shape[0] > 0):
                take = min(FRAME_SAMPLES, self.total_samples - produced)
                frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
                frame[:take] = pending[:take]
                pending = pending[FRAME_SAMPLES:]
                produced += take
                yield frame
                if produced >= self.total_samples:
                    return

    def _read(self, block: int, produced: int) -> np.ndarray:
        try:
            return self._sound.read(block, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise AudioFileError(
                f"input audio file '{self.path}' cannot be decoded past {produced / SAMPLE_RATE:.1f} s "
                f"({reason}): re-encode it as WAV or give another file"
            ) from exc

    def _feed(self, on_frame: FrameCallback) -> None:
        try:
            self.started_at = self._clock.now()
            t0 = time.monotonic()
            for index, frame in enumerate(self.frames()):
                # Deadlines from one origin: a late frame does not push back the ones after it.
                due = t0 + (index + 1) * FRAME_SECONDS
                while self.paced and (delay := due - time.monotonic()) > 0:
                    if self._stop.wait(delay):
                        return
                if self._stop.is_set():
                    return
                on_frame(frame)
                self._delivered += 1
            self._exhausted = True
        except BaseException as exc:
            # Whatever ends the feed goes to the session (it polls wait()/error) to report in one line;
            # re-raising would only print a traceback over the live view.
            self._error = exc
        finally:
            self._sound.close()
            self._done.set()
