"""Turn detection on Silero VAD probabilities recorded on a clip, clean and through the telephone
channel: the thresholds follow the channel's speech level, so a phone line's turn is not cut."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from kame_cli.backends.stt.audio import VAD_WINDOW, WHISPER_RATE
from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel
from kame_cli.backends.stt.recognizer import StreamingRecognizer
from kame_cli.backends.stt.threshold import ChannelThresholds

RECORDINGS = json.loads((Path(__file__).parent / "data" / "vad_recordings.json").read_text(encoding="utf-8"))
RECORDING = RECORDINGS["librispeech_1089-134691-0001"]
# Seconds of the clip as `kame bench stt` feeds it.
FOR_STARTS_S = 0.93
"""'For', the first word: where the clean recording opens its turn."""
SPEECH_ENDS_S = 5.41
"""Where the clean recording's speech ends."""
BUT_S = 4.04
"""'(waiting,) but (he)': tiny.en's word timestamps put 'but' at 4.04-4.20 s; the phone line
reads these words at 0.45-0.49 after a dip to 0.3."""


class RecordedVad:
    """Replays recorded probabilities, one per whole 512-sample window pushed."""

    def __init__(self, probs: list[float]) -> None:
        self._probs = np.asarray(probs, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._next = 0
        self._pending = 0

    def push(self, audio16k: np.ndarray) -> np.ndarray:
        windows, self._pending = divmod(self._pending + len(audio16k), VAD_WINDOW)
        first, self._next = self._next, self._next + windows
        return self._probs[first : self._next]


def turn_spans(model: SttModel, cfg: SttConfig, probs: list[float]) -> list[tuple[float, float]]:
    """(opened, closed) seconds of each turn the recognizer's VAD opens on recorded probabilities,
    in one stream; only the VAD runs (no decode: nothing calls `process_iter`)."""
    recognizer = StreamingRecognizer(model, cfg, vad=RecordedVad(probs))
    spans: list[tuple[float, float]] = []
    opened = 0.0
    for k in range(len(probs)):
        was_in_turn = recognizer.in_turn
        recognizer.insert_audio(np.zeros(VAD_WINDOW, dtype=np.float32))
        at = (k + 1) * VAD_WINDOW / WHISPER_RATE
        if recognizer.in_turn and not was_in_turn:
            opened = at
        elif was_in_turn and not recognizer.in_turn:
            spans.append((opened, at))
    assert not recognizer.in_turn, "the recordings end in silence: every turn closes"
    return spans


@pytest.fixture(scope="module")
def fixed(stt_config: SttConfig) -> SttConfig:
    return dataclasses.replace(stt_config, vad_follow_channel=False)


def test_a_fixed_threshold_cuts_the_phone_line_turn_and_loses_the_words_between(stt_model, fixed) -> None:
    spans = turn_spans(stt_model, fixed, RECORDING["telephone"])
    assert len(spans) == 2, spans
    (_, first_closed), (second_opened, _) = spans
    # A turn closes `end_silence_ms` after its speech and its audio goes `speech_pad_ms` past
    # the speech; the next one's audio begins `speech_pad_ms` before its onset: 'but' is in neither.
    assert first_closed - fixed.end_silence_ms / 1000 + fixed.speech_pad_ms / 1000 < BUT_S
    assert second_opened - fixed.speech_pad_ms / 1000 > BUT_S


def test_thresholds_that_follow_the_channel_keep_the_phone_line_turn_whole(stt_model, stt_config) -> None:
    assert stt_config.vad_follow_channel
    [(_, closed)] = turn_spans(stt_model, stt_config, RECORDING["telephone"])
    assert closed >= SPEECH_ENDS_S


def test_once_the_line_was_heard_a_turn_opens_at_its_first_word(stt_model, stt_config) -> None:
    # The same call twice in one stream: the first turn opens late (0.52, 0.46, 0.48, 0.44, 0.50
    # break a run of two windows above 0.5), the second, on a line known to read low, at 'For'.
    probs = RECORDING["telephone"]
    late = FOR_STARTS_S + 2 * VAD_WINDOW / WHISPER_RATE
    (first, _), (second, _) = turn_spans(stt_model, stt_config, probs + probs)
    assert first > late
    assert second - len(probs) * VAD_WINDOW / WHISPER_RATE <= late


def test_on_a_line_known_to_read_low_an_onset_run_goes_on_above_the_lower_threshold(
    stt_model, stt_config
) -> None:
    # The sonnet's first turn ('Sonnet 1.', read at ~0.87) lowers the thresholds a little, to
    # about 0.48 and 0.34; its second opens at 0.50, 0.41, where two windows above the threshold
    # come only at 0.52, 0.66, 0.13 s later (the earlier onset read 'desire increase' where the
    # later one read 'desire in crease').
    probs = RECORDINGS["librivox_sonnet001"]["telephone"]
    _, (second, _) = turn_spans(stt_model, stt_config, probs + [0.01] * 25)
    assert second == (probs.index(0.5) + 2) * VAD_WINDOW / WHISPER_RATE


def test_residual_echo_under_double_talk_does_not_open_the_users_turn_early(stt_model, stt_config) -> None:
    # `kame bench echo`, room 4, the canceller's output while the assistant talks over the user:
    # residual echo at 0.3-0.51, then the user's first word. On clear speech the onset needs two
    # windows above 0.5 (a run that went on above 0.35 opened 0.26 s early and misread the word).
    echo = [0.04, 0.17, 0.32, 0.49, 0.41, 0.48, 0.4, 0.29, 0.37, 0.38, 0.32, 0.36, 0.36, 0.42, 0.51, 0.44]
    echo += [0.37, 0.38, 0.32, 0.28, 0.3, 0.45]
    user = [0.6, 0.66, 0.72, 0.75, 0.71, 0.61, 0.63, 0.8, 0.83, 0.81, 0.82, 0.86, 0.85, 0.91, 0.9, 0.9]
    silence = [0.01] * 10
    [(opened, _)] = turn_spans(stt_model, stt_config, silence + echo + user * 3 + silence * 3)
    assert opened == (len(silence) + len(echo) + 2) * VAD_WINDOW / WHISPER_RATE


def test_on_clean_speech_the_turns_are_those_of_the_fixed_threshold(stt_model, stt_config, fixed) -> None:
    spans = turn_spans(stt_model, stt_config, RECORDING["clean"])
    assert spans == turn_spans(stt_model, fixed, RECORDING["clean"])
    [(opened, closed)] = spans
    assert opened <= FOR_STARTS_S + 2 * VAD_WINDOW / WHISPER_RATE and closed >= SPEECH_ENDS_S


def test_the_thresholds_scale_with_the_speech_level_down_to_a_floor() -> None:
    clean, phone, faint = ChannelThresholds(0.5), ChannelThresholds(0.5), ChannelThresholds(0.5)
    for prob in RECORDING["clean"][30:150]:
        clean.heard_in_turn(prob)
    for prob in RECORDING["telephone"][30:150]:
        phone.heard_in_turn(prob)
    for prob in [0.36] * 8 + [0.2] * 64:  # once lowered, the thresholds hear fainter speech
        faint.heard_in_turn(prob)
    assert (clean.threshold, clean.neg_threshold, clean.lowered) == (0.5, 0.35, False)
    assert 0.2 < phone.threshold < 0.4 and phone.lowered
    assert phone.neg_threshold == pytest.approx(phone.threshold * 0.35 / 0.5)
    assert faint.threshold == pytest.approx(0.15), "never below 0.3 of the configured threshold"
    phone.reset()
    assert (phone.threshold, phone.neg_threshold) == (0.5, 0.35), "a new stream starts from the default"
