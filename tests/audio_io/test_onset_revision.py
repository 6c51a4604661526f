"""In a room: the STT is sent the user's onset again once the barge-in VAD is sure of them, and the
search for a jump of the echo's delay leaves a filter alone while the user's voice dominates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kame_cli.clock import FRAME_SAMPLES, SAMPLE_RATE


@pytest.fixture(scope="module")
def room_990() -> Any:
    # Classic room 990 of `kame bench echo` (held out), espeak-ng users: the speaker 0.5 m from the
    # microphone, the user starts over the assistant's second turn; nothing moves.
    from kame_cli.bench.echo import _user_clips, simulate_room

    return simulate_room(990, _user_clips(None, "en-gb"), "en-us+f3", "linear", "classic", duck_db=18.0)


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def test_the_user_s_onset_is_sent_again_as_the_suppressor_would_have_let_it_through(room_990: Any) -> None:
    # Until the VAD heard the user, their first syllables met the residual-echo suppressor's full
    # depth: the output there stands 9 dB above the error against their voice alone. The revision (the
    # gentle gain throughout, from 0.2 s before the first window the VAD heard) keeps it ~25 dB above.
    revisions = room_990.talk["revisions"]
    assert len(revisions) == 1, sorted(revisions)
    ((frame, revision),) = revisions.items()
    end = (frame + 1) * FRAME_SAMPLES
    start = end - revision.shape[0]
    onset = round(room_990.user[0] * SAMPLE_RATE)
    assert start <= onset < end and end - onset <= 0.6 * SAMPLE_RATE, (start, onset, end)
    alone = np.concatenate(room_990.alone["clean"])[start:end]
    output = np.concatenate(room_990.talk["clean"])[start:end]
    assert _db(revision - alone) <= _db(output - alone) - 10.0, (_db(revision - alone), _db(output - alone))
    assert _db(alone) - _db(revision - alone) >= 20.0


def test_the_user_s_voice_does_not_pass_for_a_jump_of_the_echo_s_delay(room_990: Any) -> None:
    # Under the user's voice (the assistant ducked 18 dB) the phases of their voice against the
    # filter's echo estimate peaked at +-85 ms: the filter was shifted twice, and once in held-out
    # classic room 996 (real speech) four times, 30 dB of ERLE lost. Searched only where the echo
    # holds a good share of the microphone, it is not shifted.
    assert room_990.talk["shifts"] == []
    assert room_990.erle_db >= 45.0, room_990.erle_db
