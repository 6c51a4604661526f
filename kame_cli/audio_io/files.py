"""Audio files as a frame source: any WAV (rate, channels, bit depth), fed at real-time pace or flat out."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
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
MIN_RATE, MAX_RATE = 4_000, 768_000
"""Sample rates a real recording has; outside them the header is broken (1 Hz made 7 h of audio)."""
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
"""The only subtypes that can hold NaN or infinite samples: scanned when the file opens."""
_MPEG_SUBTYPES = ("MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III")
MAX_DECODED_S = 30 * 60
"""MP3 input is decoded whole when it opens (its decoder prints to stderr): at most this long."""
_SCAN_BLOCK = 1 << 16


def open_audio_file(path: str | os.PathLike[str]) -> soundfile.SoundFile:
    """Opens an audio file for reading, or raises AudioFileError naming the file and the fix."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"input audio file '{p}' does not exist: check the path ({_FIX})")
    if p.is_dir():
        raise AudioFileError(f"input audio file '{p}' is a directory: {_FIX}")
    if not p.is_file():
        # Checked without opening it: a FIFO with no writer would block here. A pipe cannot be
        # read twice, and a session's input is read by the up-front check, then by the front-end.
        raise AudioFileError(
            f"input audio file '{p}' is a pipe or device, not a file: kame reads its input twice "
            "(a check, then the session); save the audio to a file first (e.g. cat > input.wav)"
        )
    try:
        # Bytes: a file name that is not UTF-8 (an old Latin-1 archive) is opened as the file system
        # has it. Quiet: bytes that look like MPEG make libmpg123 print its guesses to fd 2.
        with _quiet_native_stderr():
            sound = soundfile.SoundFile(os.fsencode(p), mode="r")
    except (soundfile.LibsndfileError, OSError) as exc:
        reason = " ".join(str(getattr(exc, "error_string", None) or exc).split())
        raise AudioFileError(f"input audio file '{p}' cannot be read as audio ({reason}): {_FIX}") from exc
    if sound.frames <= 0:
        sound.close()
        raise AudioFileError(f"input audio file '{p}' holds no audio samples: {_FIX}")
    if (short := _wav_shortfall(p)) is not None:
        sound.close()
        raise AudioFileError(
            f"input audio file '{p}' is cut short: its header promises {short[0]} bytes of audio, "
            f"{max(short[1], 0)} are there (an interrupted copy or recording?): give the whole file"
        )
    if not MIN_RATE <= sound.samplerate <= MAX_RATE:
        sound.close()
        raise AudioFileError(
            f"input audio file '{p}' claims a sample rate of {sound.samplerate} Hz (a broken header?): "
            f"rates from {MIN_RATE} to {MAX_RATE} Hz are read; re-encode it as WAV"
        )
    return sound


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """(bytes the WAV header promises, bytes there) when a RIFF/WAVE file is cut short, else None.

    libsndfile quietly reads what is there; a cut file would lose its end without a word. A data
    size of 0 or 0xFFFFFFFF is a streaming writer's placeholder, not a promise.
    """
    import struct

    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, chunk_size = (
            head[offset : offset + 4],
            struct.unpack("<I", head[offset + 4 : offset + 8])[0],
        )
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF):
                return None
            there = size - (offset + 8)
            return (chunk_size, there) if there < chunk_size else None
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """File descriptor 2 sent to a scratch file meanwhile: libmpg123 prints a line per odd frame
    straight to it (94 lines for one real mp3), under any Python-level redirection. Used only while
    a file opens or decodes: a line another thread writes meanwhile would be lost with them."""
    with tempfile.TemporaryFile() as scratch:
        saved = os.dup(2)
        try:
            os.dup2(scratch.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _refuse_non_finite(path: Path, samples: np.ndarray, offset: int, rate: int) -> None:
    finite = np.isfinite(samples)
    if not finite.all():
        first = offset + int(np.argmin(finite.all(axis=1) if finite.ndim == 2 else finite))
        raise AudioFileError(
            f"input audio file '{path}' holds NaN or infinite samples (first at {first / rate:.3f} s): "
            "the recognizer would hear nothing; fix or re-export the file"
        )


def _scan_finite(path: Path, sound: soundfile.SoundFile) -> None:
    """Refuse a float file with NaN or infinite samples, before anything starts."""
    offset = 0
    try:
        for block in sound.blocks(blocksize=_SCAN_BLOCK, dtype="float32", always_2d=True):
            _refuse_non_finite(path, block, offset, int(sound.samplerate))
            offset += block.shape[0]
    except (soundfile.LibsndfileError, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise AudioFileError(f"input audio file '{path}' cannot be read as audio ({reason}): {_FIX}") from exc
    finally:
        sound.seek(0)


def _decode_whole(path: Path, sound: soundfile.SoundFile) -> np.ndarray:
    """All of a compressed file's samples, decoded now with the decoder's stderr chatter swallowed."""
    if sound.frames / sound.samplerate > MAX_DECODED_S:
        raise AudioFileError(
            f"input audio file '{path}' is an MP3 longer than {MAX_DECODED_S // 60} minutes: "
            "convert it to WAV first (e.g. sox in.mp3 out.wav)"
        )
    try:
        with _quiet_native_stderr():
            samples = sound.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise AudioFileError(f"input audio file '{path}' cannot be decoded ({reason}): {_FIX}") from exc
    if samples.shape[0] == 0:
        raise AudioFileError(f"input audio file '{path}' holds no audio samples: {_FIX}")
    _refuse_non_finite(path, samples, 0, int(sound.samplerate))
    return samples


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
        self._read_position = 0
        self._decoded: np.ndarray | None = None
        """The whole file, for formats decoded at open (MP3); None: read block by block."""
        try:
            if self._sound.subtype in _MPEG_SUBTYPES:
                self._decoded = _decode_whole(self.path, self._sound)
                self._source_frames = int(self._decoded.shape[0])
            elif self._sound.subtype in _FLOAT_SUBTYPES:
                _scan_finite(self.path, self._sound)
        except AudioFileError:
            self._sound.close()
            raise
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
        pending: np.ndarray = np.zeros(0, dtype=np.float32)
        produced = 0
        self._read_position = 0
        if self._decoded is None:
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
        if self._decoded is not None:
            start = self._read_position
            self._read_position = min(start + block, self._decoded.shape[0])
            return self._decoded[start : self._read_position]
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
