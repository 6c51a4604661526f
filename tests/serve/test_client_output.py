"""`kame talk --server` with a file: the answer written is exactly as long as the file, however the
server's voice frames and the file's feeder thread interleave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from kame_cli.audio_io import FileSource, WavSink
from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE
from kame_cli.serve.client import RemoteSession, RemoteTalk


def _session(tmp_path: Path, frames: int) -> tuple[RemoteSession, Path]:
    question = tmp_path / "question.wav"
    sf.write(question, np.zeros(frames * FRAME_SAMPLES - 100, dtype=np.float32), SAMPLE_RATE)
    output = tmp_path / "answer.wav"
    session = RemoteSession(RemoteTalk("ws://127.0.0.1:9", input_file=question, output_file=output))
    session._source = FileSource(question, paced=False)  # opened, not started: its thread has not ended
    sink = WavSink(output)
    sink.start()
    session._outputs.append(sink)
    return session, output


def test_voice_frames_past_the_files_length_are_not_written_before_its_feeder_ends(tmp_path: Path) -> None:
    session, output = _session(tmp_path, frames=5)
    session.frames_sent = 5  # every frame sent; the feeder thread not yet marked ended
    voice = np.full(FRAME_SAMPLES, 0.25, dtype=np.float32)
    for _ in range(7):  # the server's pacer stepped on silence twice: its voice runs ahead
        session._play(voice)
    session._source.stop()
    session._outputs[0].close()
    assert session.frames_played == 5
    assert sf.info(output).frames == 5 * FRAME_SAMPLES
