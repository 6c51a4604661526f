"""The cascaded baseline: the STT's final transcript -> the LLM -> the whole answer as the reply.

It reads what the front-end-only session's STT heard (its `TurnAnswer.final_text`), so the
cascade and the tandem hear the same words through the same recognizer. Its reply is the LLM's
answer itself, so its voice and oracle are one text; its onset is the end of speech to the final
plus the LLM's time to first token (a TTS would add its own time to first audio).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kame_cli.backends.oracle.prompt import Turn, build_messages
from kame_cli.eval.answers import TurnAnswer

if TYPE_CHECKING:
    from kame_cli.backends.oracle.config import PromptConfig
    from kame_cli.backends.oracle.llm import LlmClient


async def cascade_answers(
    client: LlmClient, prompt: PromptConfig, heard: Sequence[TurnAnswer]
) -> tuple[list[TurnAnswer], str]:
    """The cascade's reply to each turn heard; and a note naming a failed request ("" if none)."""
    conversation: list[Turn] = []
    answers: list[TurnAnswer] = []
    notes: list[str] = []
    for turn in heard:
        if not turn.final_text.strip():
            answers.append(TurnAnswer(turn.turn, turn.question))  # nothing heard, nothing to answer
            continue
        conversation.append(Turn("User", turn.final_text))
        parts: list[str] = []
        ttft: float | None = None
        started = time.perf_counter()
        try:
            async for chunk in client.stream(build_messages(prompt, conversation, "")):
                if ttft is None and chunk.strip():
                    ttft = time.perf_counter() - started
                parts.append(chunk)
        # LiteLLM raises many types; a failed request is this turn's reply (what came), never the run's end.
        except Exception as err:
            notes.append(f"turn {turn.turn + 1}: {type(err).__name__}: {' '.join(str(err).split())[:100]}")
        text = " ".join("".join(parts).split())
        conversation.append(Turn("Assistant", text))
        onset = None
        if ttft is not None and turn.eos_to_final_s is not None:
            onset = round(turn.eos_to_final_s + ttft, 4)
        answers.append(
            TurnAnswer(
                turn.turn,
                turn.question,
                final_text=turn.final_text,
                voice_text=text,
                oracle_text=text,
                onset_s=onset,
                informed_s=onset,
                eos_to_final_s=turn.eos_to_final_s,
            )
        )
    return answers, "; ".join(notes)
