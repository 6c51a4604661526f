"""A WAV file as a frame sink: the assistant's voice (mono), or user left / assistant right (stereo).

A writer thread owns the file. Data goes out with `os.pwrite` at known offsets and the header's sizes
are patched after every batch, so the file stays a valid WAV holding everything written so far even
if the process is killed. A write that fails (disk full) is cut back to the last whole batch and the
header left matching it; the sink then stops writing and `close` reports it in one line.
"""

from __future__ import annotations

import contextlib
import os
import queue
import struct
import threading
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from kame_cli.audio_io.frames import as_frame
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from kame_cli.errors import AudioFileError, AudioWriteError
from kame_cli.queues import drain

Side = Literal["user", "assistant"]
_CLOSE = None


def check_output_path(path: Path) -> None:
    """Raises AudioFileError unless `path` can be created or overwritten; touches nothing. A link
    or a FIFO there is refused: a link planted in a shared folder would point the recording at
    another file, and a FIFO nobody reads would block. A device (/dev/null) is written as asked."""
    fix = "choose a writable path or create its directory"
    folder = path.parent
    if path.is_symlink():
        raise AudioFileError(
            f"output file '{path}' is a symbolic link: kame never writes through links; {fix}"
        )
    if path.is_dir():
        raise AudioFileError(f"output file '{path}' is a directory: {fix}")
    if path.is_fifo() or path.is_socket():
        raise AudioFileError(f"output file '{path}' is a pipe, not a file: name a new or ordinary file")
    if not folder.is_dir():
        raise AudioFileError(f"output file '{path}' cannot be written (no directory '{folder}'): {fix}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AudioFileError(f"output file '{path}' cannot be written (permission denied): {fix}")


def open_output_file(path: Path, *, private: bool) -> BinaryIO:
    """Creates (or truncates) an output file; `private` makes it 0600, else the umask decides."""
    return os.fdopen(open_output_fd(path, private=private), "wb")


def open_output_fd(path: Path, *, private: bool) -> int:
    """`open_output_file` as a bare descriptor."""
    mode = 0o600 if private else 0o666
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise AudioFileError(
            f"output file '{path}' cannot be written ({exc.strerror}): "
            "choose a writable path or create its directory"
        ) from exc
    if private:
        # An existing file keeps its old mode through O_CREAT: set it explicitly.
        os.fchmod(fd, 0o600)
    return fd


def write_empty_wav(path: Path, *, stereo: bool = False) -> None:
    """Create (or truncate) `path` as a valid WAV with no frames: what a session stopped before its
    audio began leaves at the `--output` path, as one stopped a moment later would."""
    fd = open_output_fd(path, private=False)
    try:
        os.write(fd, wav_header(2 if stereo else 1, 0))
    except OSError as exc:
        raise AudioWriteError(f"output file '{path}' could not be written ({exc.strerror})") from exc
    finally:
        os.close(fd)


_HEADER_BYTES = 44


def wav_header(channels: int, data_bytes: int) -> bytes:
    """A canonical 16-bit PCM RIFF/WAVE header for `data_bytes` of samples at 24 kHz."""
    block = channels * 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        SAMPLE_RATE,
        SAMPLE_RATE * block,
        block,
        16,
        b"data",
        data_bytes,
    )


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")


class WavSink:
    """Writes 16-bit 24 kHz WAV from frames placed by index: gaps become silence, late frames are dropped.

    Mono holds the assistant (`write`); stereo holds the user on the left (`write_user`) and the
    assistant on the right, aligned by frame index. `write_user` is ignored by a mono sink.
    The constructor only checks the path; the file is created (or truncated) by `start`, so a session
    that fails before it starts leaves an existing file as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stereo: bool = False,
        private: bool = False,
        max_skew_s: float = 10.0,
        close_timeout_s: float = 2.0,
        fd: int | None = None,
    ) -> None:
        """`fd`: an already created file to write (a session file from `session.files`); its header
        is written at once, so it is a valid empty WAV from then on."""
        self.path = Path(path)
        self.stereo = stereo
        self._sides: tuple[Side, ...] = ("user", "assistant") if stereo else ("assistant",)
        # How far one side may run ahead before the other's missing frames are written as silence.
        self._max_skew = max(0, round(max_skew_s * SAMPLE_RATE / FRAME_SAMPLES)) if stereo else 0
        self._close_timeout_s = close_timeout_s
        self._private = private
        self._fd: int | None = None
        self._data_bytes = 0
        if fd is None:
            check_output_path(self.path)  # a bad --output fails now, before any model loads
        self._queue: queue.SimpleQueue[tuple[Side, int, np.ndarray] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Owned by the writer thread.
        self._pending: dict[Side, dict[int, np.ndarray]] = {side: {} for side in self._sides}
        self._next_index = 0
        self._highest = -1
        self.frames_written = 0
        """Frames (per channel) in the file so far."""
        self.late_frames = 0
        """Frames that arrived after their place in the file had been written (dropped)."""
        self._error: OSError | None = None
        if fd is not None:
            self._fd = fd
            self._write_header()

    def start(self) -> None:
        """Creates (or truncates) the file, writes a valid empty WAV and starts the writer thread."""
        if self._thread is not None:
            raise RuntimeError("WavSink.start() was already called")
        if self._fd is None:
            self._open()
        self._thread = threading.Thread(target=self._run, name="kame-wav-writer", daemon=False)
        self._thread.start()

    def write(self, step: int, pcm: np.ndarray) -> None:
        """Queues the assistant's frame for `step`; never blocks."""
        self._queue.put(("assistant", step, as_frame(pcm)))

    def write_user(self, frame_index: int, pcm: np.ndarray) -> None:
        """Queues the user's input frame `frame_index` (left channel of a stereo file); never blocks."""
        if self.stereo:
            self._queue.put(("user", frame_index, as_frame(pcm)))

    def close(self) -> None:
        """Writes everything queued (missing pieces as silence), finalises the header and closes the file."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            if self._queue.empty() and self._fd is None:
                return  # never started, nothing written: the file is not touched
            if self._fd is None:
                self._open()
            self._drain_queue()
            self._write_ready(final=True)
        else:
            self._queue.put(_CLOSE)
            self._thread.join(self._close_timeout_s)
            if self._thread.is_alive():
                raise AudioFileError(
                    f"output file '{self.path}' was not finished within {self._close_timeout_s:.1f} s: "
                    "the disk is too slow or full; the file holds what was written so far"
                )
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError as exc:
            self._error = self._error or exc
        if self._error is not None:
            raise AudioWriteError(
                f"output file '{self.path}' could not be written ({self._error.strerror}): "
                "free disk space or choose another path; the file holds what was written before the error"
            ) from self._error

    def _open(self) -> None:
        try:
            self._fd = open_output_fd(self.path, private=self._private)
        except AudioFileError as exc:
            raise AudioWriteError(str(exc)) from exc
        self._write_header()

    def _write_header(self) -> None:
        # The header goes out now: an empty file is already a valid WAV.
        self._pwrite_all(wav_header(len(self._sides), 0), 0)

    def _pwrite_all(self, data: bytes, offset: int) -> bool:
        """Write all of `data` at `offset`; on failure keep the error (reported at close), False."""
        if self._error is not None:
            return False
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            self._error = exc
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            finished = self._take(item) or self._drain_queue()
            self._write_ready(final=finished)
            if finished:
                return

    def _take(self, item: tuple[Side, int, np.ndarray] | None) -> bool:
        if item is None:
            return True
        side, index, frame = item
        if index < self._next_index:
            self.late_frames += 1
            return False
        self._pending[side][index] = frame
        self._highest = max(self._highest, index)
        return False

    def _drain_queue(self) -> bool:
        finished = False
        for item in drain(self._queue):
            finished = self._take(item) or finished
        return finished

    def _write_ready(self, *, final: bool) -> None:
        chunks: list[np.ndarray] = []
        while self._next_index <= self._highest:
            index = self._next_index
            complete = all(index in self._pending[side] for side in self._sides)
            if not (complete or final or self._highest - index >= self._max_skew):
                break
            columns = [self._pending[side].pop(index, None) for side in self._sides]
            silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            chunks.append(np.stack([silence if c is None else c for c in columns], axis=1))
            self._next_index += 1
        if not chunks or self._error is not None:
            return
        data = _to_pcm16(np.concatenate(chunks)).tobytes()
        if not self._pwrite_all(data, _HEADER_BYTES + self._data_bytes):
            # Disk full or the like: cut the file back to its last whole batch (the header already
            # says that much), keep the session's audio going, report at close().
            assert self._fd is not None
            with contextlib.suppress(OSError):  # not a regular file (/dev/full): nothing to cut
                os.ftruncate(self._fd, _HEADER_BYTES + self._data_bytes)
            return
        self._data_bytes += len(data)
        header = wav_header(len(self._sides), self._data_bytes)
        # Only the two size fields change; rewriting them needs no new disk space.
        if self._pwrite_all(header[4:8], 4) and self._pwrite_all(header[40:44], 40):
            self.frames_written += len(chunks)
