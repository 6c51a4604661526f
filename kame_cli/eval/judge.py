"""The judge: an LLM (any LiteLLM provider, from a profile) rates each reply 1-10 with a one-line reason.

The prompt lives here, in the project, so every run judges alike. The reply is parsed strictly:
exactly one rating from 1 to 10 (as `Rating: N`, `N/10` after it, or MT-Bench's `[[N]]`). An
answer without one, with two different ones, out of range, a refusal, an error or a timeout is a
judge *failure*, counted apart and never turned into a score.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from kame_cli.backends.oracle.config import LlmConfig
    from kame_cli.backends.oracle.llm import LlmClient

Failure = Literal["malformed", "refused", "timeout", "error"]

JUDGE_SYSTEM = (
    "You grade the answers of a voice assistant. The assistant heard a spoken question and answered "
    "aloud, so judge what it said, not its style: is it correct, relevant, and helpful for this "
    "question? Ignore missing punctuation and odd spelling from speech. An answer that is wrong, "
    "off topic or gibberish gets 1 or 2; a partly right answer 4 to 6; a correct, helpful answer "
    "8 to 10. Reply with exactly two lines and nothing else:\n"
    "Rating: <a whole number from 1 to 10>\n"
    "Reason: <one short sentence>"
)
JUDGE_TEMPLATE = (
    "{conversation}"
    "{reference}"
    "Question: {question}\n"
    "Assistant's answer: {answer}\n\n"
    "Grade the assistant's answer to the last question. Write the two lines now."
)
JUDGE_EXAMPLES = (
    (
        JUDGE_TEMPLATE.format(
            conversation="",
            reference="",
            question="What is the largest planet in the solar system?",
            answer="the biggest one is mars i think",
        ),
        "Rating: 2\nReason: Wrong: the largest planet is Jupiter, not Mars.",
    ),
    (
        JUDGE_TEMPLATE.format(
            conversation="",
            reference="",
            question="How many days are there in a leap year?",
            answer="A leap year has three hundred sixty six days, one more than usual.",
        ),
        "Rating: 9\nReason: Correct and clear: 366 days.",
    ),
)
"""Worked examples before the real question, one low and one high: small judges copy the form."""
JUDGE_MAX_TOKENS = 80
NO_ANSWER_REASON = "no answer: the reply was empty"

_NUMBER = r"(\d{1,3}(?:\.\d+)?)"
_RATING = re.compile(
    rf"\b(?:rating|score|grade)\b\s*(?:is|of)?\s*[:=\-]?\s*\**\s*(?:\[\[)?\s*{_NUMBER}\s*(?:\]\])?"
    r"(?:\s*(?:/|out of)\s*10\b)?",
    re.IGNORECASE,
)
_BRACKETED = re.compile(rf"\[\[\s*{_NUMBER}\s*\]\]")
_REASON = re.compile(r"\breason\W*\s*[:\-]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_REFUSAL = re.compile(
    r"\b(i\s*(?:can(?:no|['’])?t|am unable|['’]m unable|won['’]t|will not|must decline)|as an ai\b|"
    r"i['’]m sorry|i am sorry|i apologi[sz]e)",
    re.IGNORECASE,
)
_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class Judgment:
    """A rating with its reason, or a judge failure (then `score` is None and `failure` says why)."""

    score: int | None
    reason: str
    failure: Failure | None = None
    raw: str = ""
    """The judge's words as received (cut to a few hundred characters), for a failure's post-mortem."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Judgment:
        return cls(data["score"], str(data.get("reason", "")), data.get("failure"), str(data.get("raw", "")))


def parse_judgment(text: str) -> Judgment:
    """The judge's reply as a score and reason, or a failure ("malformed", "refused")."""
    raw = text.strip()[:400]
    values = [m.group(1) for m in _RATING.finditer(text)] + [m.group(1) for m in _BRACKETED.finditer(text)]
    if not values:
        kind: Failure = "refused" if _REFUSAL.search(text) else "malformed"
        return Judgment(None, _one_line(text) or "(empty reply)", kind, raw)
    numbers = {float(v) for v in values}
    if len(numbers) > 1:
        return Judgment(None, f"several ratings: {', '.join(sorted(set(values)))}", "malformed", raw)
    value = numbers.pop()
    if value != int(value) or not 1 <= value <= 10:
        return Judgment(None, f"rating {values[0]} is not a whole number from 1 to 10", "malformed", raw)
    reason = _REASON.search(text)
    said = reason.group(1) if reason else _RATING.sub("", _BRACKETED.sub("", text))
    return Judgment(int(value), _one_line(said), None, raw)


def said_all(text: str) -> bool:
    """Whether the judge's finished lines hold a rating and a reason, or its reason line, after a
    rating, is already longer than the part of it kept: what follows is not read (small judges
    ramble on to their token limit, often inside the reason line itself)."""
    lines = text[: text.rfind("\n") + 1]
    if _has_rating(lines) and _REASON.search(lines) is not None:
        return True
    reason = _REASON.search(text)
    if reason is None or not _has_rating(text[: reason.start()]):
        return False
    return len(" ".join(reason.group(1).split())) > _REASON_CHARS  # its kept start can no longer change


def _has_rating(text: str) -> bool:
    return _RATING.search(text) is not None or _BRACKETED.search(text) is not None


def _one_line(text: str) -> str:
    for line in text.splitlines():
        line = " ".join(line.split()).strip(" -*:")
        if line:
            return line[:_REASON_CHARS]
    return ""


def judge_messages(
    question: str, answer: str, history: Sequence[tuple[str, str]] = (), reference: str | None = None
) -> list[dict[str, str]]:
    """The judge's chat messages for one answer; `history`: the earlier (question, answer) turns."""
    conversation = ""
    if history:
        lines = [f"User: {q}\nAssistant: {a or '(silence)'}" for q, a in history]
        conversation = "Earlier in the conversation:\n" + "\n".join(lines) + "\n\n"
    ref = f"A reference answer (for you, not shown to the assistant): {reference}\n\n" if reference else ""
    user = JUDGE_TEMPLATE.format(
        conversation=conversation, reference=ref, question=question, answer=" ".join(answer.split())
    )
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        *(
            message
            for asked, rated in JUDGE_EXAMPLES
            for message in ({"role": "user", "content": asked}, {"role": "assistant", "content": rated})
        ),
        {"role": "user", "content": user},
    ]


class Judge:
    """One judge LLM: `rate()` returns a Judgment, whatever the server does (bounded by `timeout_s`)."""

    def __init__(self, llm: LlmConfig, api_base: str | None, timeout_s: float) -> None:
        from kame_cli.backends.oracle.llm import LlmClient

        # Deterministic, long enough for two lines, bounded as a whole call.
        config = dataclasses.replace(
            llm,
            max_tokens=JUDGE_MAX_TOKENS,
            temperature=0.0,
            timeout_s=timeout_s,
            read_timeout_s=min(timeout_s, 600.0),
        )
        self.client: LlmClient = LlmClient(config, api_base)
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        return self.client.where

    async def rate(
        self,
        question: str,
        answer: str,
        history: Sequence[tuple[str, str]] = (),
        reference: str | None = None,
    ) -> Judgment:
        if not answer.strip():
            return Judgment(1, NO_ANSWER_REASON)  # silence answers nothing: the floor, no judge needed
        from kame_cli.backends.oracle.faults import StreamTimeout

        messages = judge_messages(question, answer, history, reference)
        try:
            text = await asyncio.wait_for(self._collect(messages), timeout=self.timeout_s + 1.0)
        except (StreamTimeout, TimeoutError):
            return Judgment(None, f"no complete reply within {self.timeout_s:g} s", "timeout")
        # LiteLLM raises many types (connection, HTTP status, bad JSON): each is a failed judgment.
        except Exception as err:
            return Judgment(None, f"{type(err).__name__}: {' '.join(str(err).split())[:150]}", "error")
        return parse_judgment(text)

    async def _collect(self, messages: list[dict[str, str]]) -> str:
        text = ""
        stream = self.client.stream(messages)
        try:
            async for chunk in stream:
                text += chunk
                if said_all(text):
                    break  # closing the stream ends the request: the server stops generating
        finally:
            await stream.aclose()
        return text

    async def close(self) -> None:
        await self.client.close()
