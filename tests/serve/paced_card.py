"""A virtual sound card paced in real time, for clients that open the default devices (moshi.client).

The suite's `VirtualSoundCard` runs ALSA's `file` plugin over the `null` PCM, which no clock paces:
a client recording from it would send minutes of audio per second. Here the microphone's `infile`
and the speaker's `file` are named pipes, and this side writes and reads them at 80 ms per frame,
so the client's PortAudio streams run at the pace of real time. PortAudio opens each device once
while it probes them at import: the pipes are reopened whenever the other end closes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np

from kame_cli.clock import FRAME_SAMPLES, FRAME_SECONDS


def _pcm(name: str, files: str) -> str:
    return (
        f"pcm.{name} {{\n  type plug\n  slave {{\n"
        f'    pcm {{ type file; slave.pcm {{ type null }}; {files}; format "raw" }}\n'
        f"    format FLOAT_LE\n    channels 1\n    rate 24000\n  }}\n}}\n"
    )


class PacedSoundCard:
    """A default capture and playback device at 24 kHz: `say` queues what the microphone hears
    (silence otherwise); `played` is everything the client played so far."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mic = directory / "mic.fifo"
        self.speaker = directory / "speaker.fifo"
        for fifo in (self.mic, self.speaker):
            os.mkfifo(fifo)
        self.config = directory / "asound.conf"
        self.config.write_text(
            "<confdir:alsa.conf>\n"
            + _pcm("kame_mic", f'file "/dev/null"; infile "{self.mic}"')
            + _pcm("kame_speaker", f'file "{self.speaker}"')
            + 'pcm.!default { type asym; playback.pcm "kame_speaker"; capture.pcm "kame_mic" }\n'
        )
        self._lock = threading.Lock()
        self._to_say: list[np.ndarray] = []
        self._played: list[np.ndarray] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._feed, name="card-mic", daemon=True),
            threading.Thread(target=self._drain, name="card-speaker", daemon=True),
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "ALSA_CONFIG_PATH": str(self.config)}

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        # Unblock a pending open of either pipe, then let the threads end.
        for fifo, mode in ((self.mic, os.O_RDONLY), (self.speaker, os.O_WRONLY)):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, mode | os.O_NONBLOCK))
        for thread in self._threads:
            thread.join(2.0)

    def say(self, audio: np.ndarray) -> None:
        frames = len(audio) // FRAME_SAMPLES
        with self._lock:
            self._to_say.extend(
                np.asarray(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], "<f4") for i in range(frames)
            )

    @property
    def saying(self) -> bool:
        with self._lock:
            return bool(self._to_say)

    def played(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self._played) if self._played else np.zeros(0, np.float32)

    def _paced(self, tick: int, start: float) -> None:
        delay = start + tick * FRAME_SECONDS - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)

    def _feed(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, "<f4")
        start, tick = time.monotonic(), 0
        while not self._stop.is_set():
            try:
                with open(self.mic, "wb", buffering=0) as pipe:
                    while not self._stop.is_set():
                        with self._lock:
                            frame = self._to_say.pop(0) if self._to_say else silence
                        pipe.write(frame.tobytes())
                        tick += 1
                        self._paced(tick, start)
            except BrokenPipeError:
                continue

    def _drain(self) -> None:
        start, taken = time.monotonic(), 0
        while not self._stop.is_set():
            with open(self.speaker, "rb", buffering=0) as pipe:
                while not self._stop.is_set():
                    data = pipe.read(FRAME_SAMPLES * 4)
                    if not data:
                        break
                    usable = len(data) - len(data) % 4
                    with self._lock:
                        self._played.append(np.frombuffer(data[:usable], "<f4").copy())
                    taken += usable
                    self._paced(taken // (FRAME_SAMPLES * 4), start)


def started_card(directory: Path) -> PacedSoundCard:
    """A `PacedSoundCard` in `directory` (made here), already feeding and draining."""
    directory.mkdir()
    card = PacedSoundCard(directory)
    card.start()
    return card
