"""Shared fixtures: the real bundled tiny.en loaded once, espeak-ng questions synthesized once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from kame_cli.backends.stt.config import SttConfig
from kame_cli.backends.stt.model import SttModel, load_stt_model
from tests.support.speech import load, speak

QUESTIONS = (
    ("How many legs does a spider have?", "spider"),
    ("What is the tallest mountain in the world?", "mountain"),
    ("What is the weather like tomorrow in London?", "london"),
    ("Why do cats sleep so much during the day?", "cats"),
    ("Please tell me a short story about a brave little dog who wanted to visit the ocean.", "ocean"),
    ("Can you explain how a rainbow forms after the rain stops and the sun comes out again?", "rainbow"),
)
"""Spoken questions and the content word each one must be heard with (two have 12+ words)."""


@dataclass(frozen=True)
class Question:
    text: str
    key_word: str
    audio: np.ndarray
    """24 kHz speech, without leading or trailing silence."""


@pytest.fixture(scope="session")
def stt_config() -> SttConfig:
    # cpu: the defaults on a CUDA machine pick a model that is not bundled.
    return SttConfig(device="cpu")


@pytest.fixture(scope="session")
def stt_model(stt_config: SttConfig) -> SttModel:
    return load_stt_model(stt_config)


@pytest.fixture(scope="session")
def questions(tmp_path_factory: pytest.TempPathFactory) -> list[Question]:
    folder = tmp_path_factory.mktemp("questions")
    return [
        Question(text, key, load(speak(text, folder / f"q{i}.wav")))
        for i, (text, key) in enumerate(QUESTIONS)
    ]
