"""A revision of the STT's audio crosses the processes with the frame it follows: the back-end hands
the STT the frame, then the revision (`UserFrame.revision`)."""

from __future__ import annotations

from multiprocessing import Pipe

import numpy as np

from kame_cli.backends.oracle.config import PolicyConfig, PromptConfig
from kame_cli.backends.stt.config import SttConfig
from kame_cli.clock import FRAME_SAMPLES
from kame_cli.session.backend_proc import BackendProcess
from kame_cli.session.wire import BackendSetup, UserFrame


class _Stt:
    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray]] = []

    def submit_frame(self, pcm: np.ndarray) -> None:
        self.calls.append(("frame", pcm.copy()))

    def submit_revision(self, pcm: np.ndarray) -> None:
        self.calls.append(("revision", pcm.copy()))


def test_the_back_end_gives_the_stt_the_frame_then_its_revision() -> None:
    ours, theirs = Pipe()
    setup = BackendSetup(SttConfig(), None, PolicyConfig(), PromptConfig(), 0.0, True, 0)
    backend = BackendProcess(ours, setup)
    stt = backend.stt = _Stt()
    rng = np.random.default_rng(0)
    frame = rng.standard_normal(FRAME_SAMPLES).astype(np.float32)
    revision = rng.standard_normal(3 * FRAME_SAMPLES).astype(np.float32)
    # Through a real wire, as the supervisor forwards it.
    theirs.send(UserFrame(0, frame.tobytes(), revision.tobytes()))
    theirs.send(UserFrame(1, frame.tobytes()))
    for _ in range(2):
        backend._on_message(ours.recv())
    assert [kind for kind, _ in stt.calls] == ["frame", "revision", "frame"]
    np.testing.assert_array_equal(stt.calls[0][1], frame)
    np.testing.assert_array_equal(stt.calls[1][1], revision)
    ours.close()
    theirs.close()
