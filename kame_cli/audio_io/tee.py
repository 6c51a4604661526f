"""Fan-out of one frame stream to several sinks (the speaker and a WAV file at once)."""

from __future__ import annotations

import numpy as np

from kame_cli.audio_io.frames import FrameSink


class TeeSink:
    """Writes every frame to each sink in order; `close` closes all of them, then raises the first error."""

    def __init__(self, *sinks: FrameSink) -> None:
        self.sinks = sinks

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def write(self, step: int, pcm: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(step, pcm)

    def close(self) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            # Every sink must get its close() (a valid WAV) even if another one fails.
            try:
                sink.close()
            except Exception as exc:  # any sink's failure; the first one is raised after the rest close
                first = first or exc
        if first is not None:
            raise first
