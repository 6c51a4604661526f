"""The cascaded baseline, measured in the same run: STT final -> LLM first token, on the same server.

A cascade (ASR -> LLM -> TTS) can only send its request once the user's turn is final. The client
here follows the session log as it is written and, for each final transcript, sends the request a
cascade would send at that moment (the same prompt the oracle producer builds, from the same
conversation folded from the same events) to the same LLM server through the same LiteLLM client,
and times its first token. Only that time counts: (c) = (final - end of speech) + time to first token.

Fairness, both ways:
- it is serialized behind the oracle: it waits until the producer's own request on that final has
  ended (or, if none comes, until no request runs), so the two never share the server's slot, and
  the oracle's figures are not slowed by it either;
- the server's prompt cache is set as a cascade's would be: first an untimed request for the
  conversation *before* this turn (what a cascade sent at its previous turn), then the timed one,
  which must process the new user turn. Without it the timed prompt would be a full cache hit (the
  oracle just sent the same text) and the cascade would look faster than any real one.
The timed stream is closed at its first token, so the server is soon free for the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kame_cli.backends.oracle.prompt import Conversation, build_messages
from kame_cli.errors import ConfigError
from kame_cli.events import (
    Event,
    FinalTranscript,
    FrontendText,
    OracleFinished,
    OracleRequestStarted,
    PartialTranscript,
)

if TYPE_CHECKING:
    from kame_cli.backends.oracle.llm import LlmClient
    from kame_cli.profiles import Profile

_WAIT_FOR_ORACLE_S = 8.0
"""Longest wait for the oracle's request on a final to end; then the cascade goes anyway (noted)."""
_NO_FINAL_REQUEST_S = 1.5
"""With no oracle request on the final this long after it, the cascade goes as soon as none runs."""


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """The cascade's timing for one final transcript (session-clock `final_t` identifies it)."""

    final_t: float
    final_text: str
    ttft_s: float | None
    """Request sent -> first non-empty chunk; None if the request failed."""
    waited_s: float
    """Time the request waited for the oracle to leave the server (not counted in (c))."""
    note: str = ""


@dataclass
class _Pending:
    final: FinalTranscript
    seen_at: float
    timed: list[dict[str, str]]
    prime: list[dict[str, str]]


class CascadeClient:
    """Fed the session's events in log order (`observe`), it times one cascade request per final.

    `observe` and `poll` run on the caller's thread; requests run one at a time on an asyncio loop
    in this object's own thread, so the log is read on time while a request streams.
    """

    def __init__(self, profile: Profile, api_base: str | None) -> None:
        self._profile = profile
        self._api_base = api_base
        self._conversation = Conversation()
        self._running: dict[int, OracleRequestStarted] = {}
        self._final_requests: dict[int, OracleRequestStarted] = {}
        self._ended: set[int] = set()
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self.results: list[CascadeResult] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kame-cascade", daemon=True)
        self._client: LlmClient | None = None

    def start(self) -> None:
        from kame_cli.backends.oracle.llm import LlmClient

        self._client = LlmClient(self._profile.llm, self._api_base)  # imports LiteLLM (~2 s)
        self._thread.start()

    # --- caller's thread -------------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Fold one logged event (the producer's conversation is rebuilt from the same events)."""
        conversation = self._conversation
        if isinstance(event, PartialTranscript):
            conversation.set_partial(event.text)
        elif isinstance(event, FrontendText):
            conversation.add_frontend_text(event.text)
        elif isinstance(event, FinalTranscript):
            prime = build_messages(self._profile.prompt, conversation.turns, "")
            conversation.close_user_turn(event.text)
            if event.text.strip():
                timed = build_messages(self._profile.prompt, conversation.turns, "")
                self._queue.append(_Pending(event, time.monotonic(), timed, prime))
        elif isinstance(event, OracleRequestStarted):
            self._running[event.generation] = event
            if event.reason == "final":
                self._final_requests[event.generation] = event
        elif isinstance(event, OracleFinished):
            self._running.pop(event.generation, None)
            self._ended.add(event.generation)

    def poll(self, *, ended: bool = False) -> None:
        """Send the requests whose turn has come; `ended`: the session is over, nothing will run."""
        now = time.monotonic()
        while self._queue:
            with self._lock:
                if self._in_flight:
                    return  # one cascade request at a time
            pending = self._queue[0]
            ready, note = self._oracle_done_with(pending, now, ended)
            if not ready:
                return
            self._queue.pop(0)
            with self._lock:
                self._in_flight += 1
            asyncio.run_coroutine_threadsafe(self._measure(pending, now - pending.seen_at, note), self._loop)

    def _oracle_done_with(self, pending: _Pending, now: float, ended: bool) -> tuple[bool, str]:
        waited = now - pending.seen_at
        ours = [r for r in self._final_requests.values() if r.t >= pending.final.t]
        if ours and all(r.generation in self._ended for r in ours):
            return True, "sent while a later oracle request ran" if self._running else ""
        if not ours and not self._running and (waited >= _NO_FINAL_REQUEST_S or ended):
            return True, "" if waited >= _NO_FINAL_REQUEST_S else "session ended first"
        if ended:
            return True, "session ended first"
        if waited >= _WAIT_FOR_ORACLE_S:
            return True, f"sent while the oracle still streamed (waited {waited:.0f} s)"
        return False, ""

    def finish(self, timeout: float = 20.0) -> list[CascadeResult]:
        """Send what is still queued, wait for every request, stop the thread; the results by final."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(ended=True)
            with self._lock:
                if not self._queue and self._in_flight == 0:
                    break
            time.sleep(0.02)
        if self._thread.is_alive():
            if self._client is not None:
                with contextlib.suppress(TimeoutError, RuntimeError):
                    asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(1.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2.0)
        return sorted(self.results, key=lambda r: r.final_t)

    # --- the cascade's thread --------------------------------------------------------------------

    async def _measure(self, pending: _Pending, waited: float, note: str) -> None:
        try:
            await self._first_token(pending.prime)  # untimed: the cache a cascade would have
        except Exception as err:  # LiteLLM raises many types; the timed request reports the fault
            note = note or f"cache priming failed: {type(err).__name__}"
        ttft: float | None = None
        try:
            started = time.perf_counter()
            await self._first_token(pending.timed)
            ttft = time.perf_counter() - started
        # Any failure of the LLM library or the server ends this measurement, never the bench.
        except Exception as err:
            note = f"request failed: {type(err).__name__}: {' '.join(str(err).split())[:120]}"
        self.results.append(CascadeResult(pending.final.t, pending.final.text, ttft, waited, note))
        with self._lock:
            self._in_flight -= 1

    async def _first_token(self, messages: list[dict[str, str]]) -> None:
        assert self._client is not None
        stream = self._client.stream(messages)
        try:
            async for raw in stream:
                if raw.strip():
                    return  # the first token the producer would also have counted
        finally:
            await stream.aclose()  # an async generator: closes the request
        raise RuntimeError("the answer was empty")


CASCADE_FILE = "cascade.json"
"""Beside a measured session's events.jsonl: the cascade's timings, so a plot can show them later."""


def write_cascades(log_dir: Path, results: list[CascadeResult]) -> None:
    from kame_cli.session.files import open_session_file

    with open(open_session_file(log_dir, CASCADE_FILE), "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(r) for r in results], f, indent=1)


def read_cascades(log_dir: Path) -> list[CascadeResult]:
    """The cascade timings saved with a session (none for a plain `kame talk` log)."""
    path = log_dir / CASCADE_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [CascadeResult(**row) for row in rows]
    except (json.JSONDecodeError, TypeError) as err:
        raise ConfigError(f"{path}: not a kame cascade file ({err}); remove it") from None
