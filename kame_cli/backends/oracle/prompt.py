"""The conversation the oracle sees, and the one function that turns it into LLM messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from kame_cli.backends.oracle.config import PromptConfig

Speaker = Literal["User", "Assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One line of the conversation: a closed user turn, or what the front-end said."""

    speaker: Speaker
    text: str


class Conversation:
    """Closed user turns and the front-end's spoken words, plus the user's unfinished turn.

    Owned by the oracle producer's thread alone.
    """

    def __init__(self, keep_turns: int = 256, *, hold_context: bool = False) -> None:
        self._keep = keep_turns
        self._hold = hold_context
        self.turns: list[Turn] = []
        self.partial = ""
        self.closed_user_words = 0
        # `PromptConfig.hold_context`: the lines requests see, as they stood when the user's turn
        # began (after its final: those lines and the final), and that turn's start in the audio.
        self._held: list[Turn] | None = None
        self._held_turn: float | None = None

    def set_partial(self, text: str, turn_start: float = 0.0) -> None:
        """The user's unfinished turn so far; `turn_start`: where its speech began (a new value is a
        new turn, even when the last one never got a final)."""
        self.partial = " ".join(text.split())
        if self._hold and self.partial and self._held_turn != turn_start:
            self._held = list(self.turns)
            self._held_turn = turn_start

    @property
    def context(self) -> list[Turn]:
        """The lines a request puts before the user's unfinished turn (all of them when the
        context is not held)."""
        return self._held if self._held is not None else self.turns

    def close_user_turn(self, text: str) -> None:
        """A final transcript: the user's turn joins the conversation, the partial is cleared."""
        text = " ".join(text.split())
        self.partial = ""
        if text:
            self.turns.append(Turn("User", text))
            del self.turns[: -self._keep]
            self.closed_user_words += len(text.split())
        # The final's request too sees the held lines, then the final: only the user's line is new
        # to the server. What the front-end said during the turn joins at the next turn.
        held = self._held
        self._held = [*held, Turn("User", text)] if held is not None and text else None
        self._held_turn = None

    def add_frontend_text(self, piece: str) -> None:
        # Pieces arrive token by token; consecutive ones build one assistant line (spaces are
        # normalized when the prompt is built).
        piece = piece.replace("\u2581", " ")
        if self.turns and self.turns[-1].speaker == "Assistant":
            self.turns[-1] = Turn("Assistant", self.turns[-1].text + piece)
        elif piece.strip():
            self.turns.append(Turn("Assistant", piece))
            del self.turns[: -self._keep]

    @property
    def user_words(self) -> int:
        """Words the user has said so far in the session, the unfinished turn included."""
        return self.closed_user_words + len(self.partial.split())

    @property
    def current_user_text(self) -> str:
        """The user text the next request answers: the partial, else the last closed user turn."""
        if self.partial:
            return self.partial
        for turn in reversed(self.turns):
            if turn.speaker == "User":
                return turn.text
        return ""


class Note(Protocol):
    """A passage of the user's documents for the prompt, and where it is from."""

    @property
    def source(self) -> str: ...

    @property
    def text(self) -> str: ...


NOTES_HEADING = (
    "Reference notes from the user's documents (use them when they answer the user; speak the "
    "facts, never the sources):"
)


def notes_block(notes: Sequence[Note], max_chars: int) -> tuple[str, int]:
    """The reference notes for one request, and how many passages they hold: one line per passage,
    tagged with its source, best first, at most `max_chars` characters of lines (a first passage
    longer than that is cut at a word); empty without notes."""
    lines: list[str] = []
    used = 0
    for note in notes:
        line = f"[source: {note.source}] {' '.join(note.text.split())}"
        room = max_chars - used - (1 if lines else 0)
        if len(line) > room:
            if lines:
                break
            line = line[: room + 1].rsplit(" ", 1)[0]
        lines.append(line)
        used += len(line) + (1 if len(lines) > 1 else 0)
    return ("\n".join([NOTES_HEADING, *lines]) if lines else ""), len(lines)


def build_messages(
    prompt: PromptConfig, turns: Sequence[Turn], partial: str, notes: str = ""
) -> list[dict[str, str]]:
    """Chat messages for one oracle request: the system prompt, then, with `[knowledge]`, the
    reference notes (`notes_block`), then the conversation's last lines.

    The notes come before the conversation: while the user speaks, restarts mostly retrieve the
    same passages (the same words always do), so the system prompt, the notes and the held lines
    stay the server's cached prefix and only the user's growing line is read again. After the
    conversation, they were read again at every restart: llama.cpp (SmolLM2-135M, this CPU,
    three growing turns) answered in 558 ms at the median with the notes first, 1999 ms with them
    last.
    """
    lines = [f"{turn.speaker}: {' '.join(turn.text.split())}" for turn in turns]
    if partial:
        lines.append(f"User: {partial}")
    lines = lines[-prompt.max_turns :]
    user = prompt.user_template.format(conversation="\n".join(lines))
    return [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": f"{notes}\n\n{user}" if notes else user},
    ]
