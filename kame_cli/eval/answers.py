"""What one reply said and when: the record judged and reported, one per question turn and setup."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TurnAnswer:
    """One turn's reply in one setup; latencies in seconds after the end of the user's speech."""

    turn: int
    """0 for the first question, 1 for the follow-up, ..."""
    question: str
    final_text: str = ""
    """What the STT's final transcript heard ("" when none came)."""
    voice_text: str = ""
    """What the voice said: the front-end's text stream in the reply window (a cascade: its answer)."""
    voice_transcript: str = ""
    """An offline transcript (tiny.en or the profile's STT model) of the output audio in that window."""
    oracle_text: str = ""
    """The LLM's last informed oracle for the turn, as streamed ("" when none came)."""
    onset_s: float | None = None
    """End of speech -> the reply's first word (a cascade: final transcript + the LLM's first token)."""
    informed_s: float | None = None
    """End of speech -> the first token of an informed oracle fed to the front-end."""
    eos_to_final_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TurnAnswer:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def answers_to_json(answers: list[TurnAnswer], *, note: str = "") -> dict[str, Any]:
    return {"answers": [a.to_json() for a in answers], "note": note}


def answers_from_json(data: Any) -> list[TurnAnswer] | None:
    """The cached answers, or None if the file is not one (then the work is done again)."""
    try:
        return [TurnAnswer.from_json(row) for row in data["answers"]]
    except (TypeError, KeyError):
        return None
