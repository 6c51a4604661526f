"""What went wrong with an LLM call, in words for the status panel (never with a secret in them)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Literal

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
    "bad_url",
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


class StreamCutOff(Exception):
    """The body ended before the server's finish reason: the answer is incomplete."""

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


def _litellm_types() -> dict[str, type[BaseException]]:
    """LiteLLM's exception classes by name, if LiteLLM is loaded (an error from it implies it is)."""
    module: Any = sys.modules.get("litellm")
    if module is None:
        return {}
    names = (
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "RateLimitError",
        "BadRequestError",
        "ContextWindowExceededError",
        "Timeout",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
        "MidStreamFallbackError",
    )
    found = {name: getattr(module, name, None) for name in names}
    return {name: cls for name, cls in found.items() if isinstance(cls, type)}


_BAD_URL_TYPES = frozenset(
    {"InvalidURL", "UnsupportedProtocol", "InvalidUrlClientError", "InvalidURLClientError"}
)
_CONNECT_TYPES = frozenset({"ConnectError", "ClientConnectorError", "ClientConnectorDNSError"})
_CONNECT_TIMEOUT_TYPES = frozenset({"ConnectTimeout", "ConnectionTimeoutError", "ServerTimeoutError"})


def _never_sent(chain: list[BaseException]) -> tuple[FaultKind, Literal["degraded", "error"], str] | None:
    """Why the request never reached a server (a URL that does not parse, DNS, a refused or timed-out
    connection), as (kind, state, words); None when it did reach one.

    LiteLLM gives such failures a status of its own making (500): no server sent it, so these
    causes are looked for before any status is believed.
    """
    import socket

    names = {type(e).__name__ for e in chain}
    if names & _BAD_URL_TYPES or any(type(e) is ValueError and "url" in str(e).lower() for e in chain):
        return "bad_url", "error", "the URL does not parse: fix api_base"
    if any(isinstance(e, socket.gaierror) for e in chain) or "ClientConnectorDNSError" in names:
        return "unreachable", "error", "host name not found (DNS): check api_base"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "unreachable", "error", "connection refused (is the server running?)"
    if names & _CONNECT_TIMEOUT_TYPES:
        return "unreachable", "degraded", "connection timed out"
    if names & _CONNECT_TYPES:
        return "unreachable", "error", "no connection (is the server running?)"
    return None


def _status_of(chain: list[BaseException]) -> int | None:
    for e in chain:
        code = getattr(e, "status_code", None)
        if isinstance(code, int) and 100 <= code <= 599:
            return code
        response = getattr(e, "response", None)
        code = getattr(response, "status_code", None)
        if isinstance(code, int) and 100 <= code <= 599:
            return code
    return None


def classify(
    err: BaseException,
    *,
    where: str,
    key_env: str | None,
    secret: str | None,
    first_chunk_seen: bool,
) -> LlmFault:
    """Turn any exception from a LiteLLM stream into a fault; `where` names model and server.

    In order: kame's own stream faults; the HTTP status the server answered; LiteLLM's exception
    type; the exceptions under it (a refused connection); the message text only as a last resort
    (LiteLLM wraps some faults of some providers in a generic error whose text is all there is).
    """
    chain = _chain(err)
    status = _status_of(chain)
    types = _litellm_types()

    def of(*names: str) -> bool:
        classes = tuple(types[n] for n in names if n in types)
        return bool(classes) and any(isinstance(e, classes) for e in chain)

    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    detail = scrub(str(err).splitlines()[0] if str(err) else type(err).__name__, secret)[:160]

    if isinstance(err, StreamTimeout):
        kind: FaultKind = "stalled" if err.first_chunk_seen else "no_answer"
        return LlmFault(kind, "degraded", f"{where}: {err}")
    if isinstance(err, StreamCutOff):
        return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({err})")
    if not first_chunk_seen and (cause := _never_sent(chain)) is not None:
        kind_, state, words = cause
        return LlmFault(
            kind_,
            state,
            f"{where} is unreachable: {words}" if kind_ == "unreachable" else f"{where}: {words}",
        )
    if status in (401, 403) or of("AuthenticationError", "PermissionDeniedError"):
        fix = (
            f"check the key in {key_env}"
            if key_env
            else "set [llm] api_key_env to the variable holding the key"
        )
        return LlmFault("auth", "error", f"{where} refused the request ({status}): {fix}", status)
    if status == 429 or of("RateLimitError"):
        return LlmFault("rate_limited", "degraded", f"{where} is rate limiting (429); backing off", 429)
    if status == 404 or of("NotFoundError"):
        return LlmFault("not_found", "error", f"{where}: model not found ({detail})", status)
    if of("MidStreamFallbackError") or (first_chunk_seen and not of("Timeout")):
        return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({detail})", status)
    if of("Timeout") or any(isinstance(e, TimeoutError) for e in chain):
        return LlmFault("no_answer", "degraded", f"{where}: no answer ({detail})", status)
    if (status is not None and status >= 500) or of(
        "InternalServerError", "ServiceUnavailableError", "BadGatewayError"
    ):
        if status is None and any(s in text for s in _REFUSED):
            # LiteLLM reports some providers' refused connections as a 500 with this text only.
            return LlmFault("unreachable", "error", f"{where} is unreachable (is the server running?)")
        if status is None and any(s in text for s in _CUT_OFF):
            return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({detail})")
        shown = status if status is not None else "5xx"
        return LlmFault("server_error", "degraded", f"{where}: server error {shown} ({detail})", status)
    if status == 400 or of("BadRequestError", "ContextWindowExceededError"):
        return LlmFault("bad_request", "error", f"{where} rejected the request (400): {detail}", status)
    # The fallback: errors that carry no type or status kame knows, by their text.
    if of("APIConnectionError") or any(s in text for s in _REFUSED):
        if any(s in text for s in _REFUSED):
            return LlmFault("unreachable", "error", f"{where} is unreachable (is the server running?)")
        if any(s in text for s in _CUT_OFF):
            return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({detail})", status)
        return LlmFault("unreachable", "error", f"{where} is unreachable ({detail})")
    if any(s in text for s in _CUT_OFF):
        return LlmFault("disconnected", "degraded", f"{where}: stream cut off ({detail})", status)
    if "timeout" in text or "timed out" in text:
        return LlmFault("no_answer", "degraded", f"{where}: no answer ({detail})", status)
    return LlmFault("unexpected", "error", f"{where}: {type(err).__name__}: {detail}", status)
