"""What went wrong with an LLM call, in words for the status panel (never with a secret in them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "auth",
    "not_found",
    "rate_limited",
    "server_error",
    "unreachable",
    "no_answer",
    "stalled",
    "disconnected",
    "bad_request",
    "unexpected",
]

_KEY_LIKE = re.compile(r"\b(sk|pk|key|api)[-_][A-Za-z0-9_\-*]{6,}", re.IGNORECASE)
_REFUSED = ("connection refused", "connect call failed", "cannot connect to host", "connection error")
_CUT_OFF = (
    "payload is not completed",
    "server disconnected",
    "peer closed connection",
    "connection reset",
    "incomplete chunked read",
    "remoteprotocolerror",
)


class StreamTimeout(Exception):
    """No chunk within the read timeout, or the whole call ran past its bound."""

    def __init__(self, message: str, *, first_chunk_seen: bool) -> None:
        super().__init__(message)
        self.first_chunk_seen = first_chunk_seen


@dataclass(frozen=True, slots=True)
class LlmFault:
    """A classified failure: `degraded` faults are expected to pass, `error` ones need the user."""

    kind: FaultKind
    state: Literal["degraded", "error"]
    message: str
    status: int | None = None


def scrub(text: str, secret: str | None) -> str:
    """`text` without the key (or anything shaped like one), on one line."""
    if secret:
        text = text.replace(secret, "***")
    text = _KEY_LIKE.sub("***", text)
    return " ".join(text.split())


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(
    err: BaseException,
    *,
    where: str,
    key_env: str | None,
    secret: str | None,
    first_chunk_seen: bool,
) -> LlmFault:
    """Turn any exception from a LiteLLM stream into a fault; `where` names model and server."""
    chain = _chain(err)
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    status = next(
        (code for e in chain if isinstance(code := getattr(e, "status_code", None), int)),
        None,
    )
    detail = scrub(str(err).splitlines()[0] if str(err) else type(err).__name__, secret)[:160]

    if isinstance(err, StreamTimeout):
        kind: FaultKind = "stalled" if err.first_chunk_seen else "no_answer"
        return LlmFault(kind, "degraded", f"{where}: {err}")
    if status in (401, 403) or "missing credentials" in text:
        fix = (
            f"check the key in {key_env}"
            if key_env
            else "set [llm] api_key_env to the variable holding the key"
        )
        return LlmFault("auth", "error", f"{where} refused the request ({status}): {fix}", status)
    if status == 429 or "ratelimit" in text:
        return LlmFault("rate_limited", "degraded", f"{where} is rate limiting (429); backing off", 429)
    if status == 404 or "not found" in text:
        return LlmFault("not_found", "error", f"{where}: model not found ({detail})", status)
    refused = any(isinstance(e, ConnectionRefusedError) for e in chain) or any(s in text for s in _REFUSED)
    if refused and not first_chunk_seen:
        return LlmFault("unreachable", "error", f"{where} is unreachable (is the server running?)")
    if first_chunk_seen or any(s in text for s in _CUT_OFF) or "midstreamfallback" in text:
        return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({detail})", status)
    if "timeout" in text or "timed out" in text:
        return LlmFault("no_answer", "degraded", f"{where}: no answer ({detail})", status)
    if status is not None and status >= 500:
        return LlmFault("server_error", "degraded", f"{where}: server error {status} ({detail})", status)
    if status == 400:
        return LlmFault("bad_request", "error", f"{where} rejected the request (400): {detail}", status)
    return LlmFault("unexpected", "error", f"{where}: {type(err).__name__}: {detail}", status)
