"""A virtual sound card for tests: an ALSA configuration whose PCMs PortAudio lists as devices.

Each microphone is ALSA's `file` plugin reading a raw float32 file over the `null` PCM; each
speaker writes what it plays to a raw float32 file. A `plug` in front fixes the rate the card
itself runs at, so what a test hears went through a real PortAudio stream. The `null` PCM is not
paced by a clock: streams run as fast as the CPU allows, so tests stop them after a frame count.
PortAudio reads the configuration once, when sounddevice is imported, hence the subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.support.python import run_python, succeeded


class VirtualSoundCard:
    """Builds the ALSA configuration in a test's directory and runs Python code against it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pcms: list[str] = []
        self.stderr = ""
        """What the last `run` printed on stderr."""

    def add_microphone(self, name: str, rate: int, signal: np.ndarray) -> None:
        """A capture device running at `rate` that records `signal` (float32 mono)."""
        raw = self.directory / f"{name}.in.raw"
        np.asarray(signal, dtype="<f4").tofile(raw)
        self._pcms.append(self._pcm(name, rate, f'file "/dev/null"; infile "{raw}"'))

    def add_speaker(self, name: str, rate: int) -> Path:
        """A playback device running at `rate`; returns the raw float32 file it plays into."""
        raw = self.directory / f"{name}.out.raw"
        self._pcms.append(self._pcm(name, rate, f'file "{raw}"'))
        return raw

    @staticmethod
    def _pcm(name: str, rate: int, files: str) -> str:
        return (
            f"pcm.{name} {{\n  type plug\n  slave {{\n"
            f'    pcm {{ type file; slave.pcm {{ type null }}; {files}; format "raw" }}\n'
            f"    format FLOAT_LE\n    channels 1\n    rate {rate}\n  }}\n}}\n"
        )

    def run(self, code: str, timeout: float = 60.0) -> dict:
        """Runs `code` in a fresh interpreter that sees only this card; returns the JSON it printed last."""
        config = self.directory / "asound.conf"
        config.write_text("<confdir:alsa.conf>\n" + "".join(self._pcms))
        done = run_python(code, env={**os.environ, "ALSA_CONFIG_PATH": str(config)}, timeout=timeout)
        self.stderr = done.stderr
        return succeeded(done)
