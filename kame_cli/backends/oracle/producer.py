"""The oracle producer: carries out KAME's restart policy with LLM streams into the oracle stream.

It runs an asyncio loop in its own thread and alone owns the conversation, the policy's state and
the LLM streams. Other threads hand it transcript and front-end events through `on_event`; it hands
the front-end `OracleReset` / `OracleAppend` / `OracleClear` commands through `send`. When to start
or restart is `RestartPolicy`'s decision (pure, in `policy.py`); this module polls it, starts and
cancels the streams, and reports faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig, PromptConfig
from kame_cli.backends.oracle.executor import ClosingExecutor
from kame_cli.backends.oracle.faults import LlmFault, classify
from kame_cli.backends.oracle.llm import LlmClient
from kame_cli.backends.oracle.policy import RestartPolicy, StartReason
from kame_cli.backends.oracle.prompt import Conversation, build_messages
from kame_cli.bus import EventSink
from kame_cli.clock import SessionClock
from kame_cli.events import (
    BackendStatus,
    Event,
    FinalTranscript,
    FrontendText,
    OracleAppend,
    OracleChunk,
    OracleClear,
    OracleCommand,
    OracleFinished,
    OracleRequestStarted,
    OracleReset,
    PartialTranscript,
)
from kame_cli.priority import deprioritize_current_thread

if TYPE_CHECKING:
    from kame_cli.knowledge.retriever import Retriever

Tokenize = Callable[[str], list[int]]


@dataclass(slots=True)
class _Stream:
    generation: int
    task: asyncio.Task[None]


class OracleProducer:
    """Streams LLM answers for the user's growing transcript into the front-end's oracle stream.

    A restart cancels the running request (closing its HTTP connection); a cancelled or failed
    stream never sends another command, and what the front-end has not yet consumed of a failed
    one is withdrawn (`OracleClear`: padding from then on, no start token). Back-end faults become
    `BackendStatus` events and a back-off, never exceptions.
    """

    def __init__(
        self,
        llm: LlmConfig,
        policy: PolicyConfig,
        prompt: PromptConfig,
        *,
        tokenize: Tokenize,
        send: Callable[[OracleCommand], None],
        events: EventSink,
        clock: SessionClock,
        api_base: str | None = None,
        knowledge: Retriever | None = None,
    ) -> None:
        self.llm = llm
        self.policy = policy
        self.prompt = prompt
        self._tokenize = tokenize
        self._send_command = send
        self._events = events
        self._clock = clock
        self._api_base = api_base
        self._knowledge = knowledge  # [knowledge]: the user's documents (kame_cli/knowledge)
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        # Set by stop() in the caller's thread: from then on nothing more is sent.
        self._closed = False
        self._client: LlmClient | None = None
        # Everything below belongs to the loop thread.
        self.conversation = Conversation(hold_context=prompt.hold_context)
        self.restart = RestartPolicy(policy)
        self._generation = 0
        self._running: _Stream | None = None
        self._health: Literal["unknown", "ok", "degraded", "error"] = "unknown"

    # --- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Import LiteLLM (about 2 s, so before audio starts) and start the producer's thread."""
        if self._thread is not None:
            raise RuntimeError("OracleProducer.start() called twice")
        self._client = LlmClient(self.llm, self._api_base)
        self._thread = threading.Thread(target=self._run, name="kame-oracle", daemon=False)
        self._thread.start()
        self._ready.wait(timeout=5.0)

    def on_event(self, event: Event) -> None:
        """Hand over a transcript or front-end event; never blocks, callable from any thread."""
        if not isinstance(event, PartialTranscript | FinalTranscript | FrontendText):
            return
        self._inbox.put(event)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: we are stopped
                loop.call_soon_threadsafe(self._drain_inbox)

    def stop(self, timeout: float = 1.0) -> bool:
        """Cancel the running request and end the thread; True if it ended within `timeout`."""
        self._closed = True
        thread, loop = self._thread, self._loop
        if thread is None:
            return True
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._shutdown)
        thread.join(timeout=timeout)
        return not thread.is_alive()

    # --- loop thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        deprioritize_current_thread()
        loop = asyncio.new_event_loop()
        # LiteLLM builds each request in this pool; see `ClosingExecutor` for why not the default.
        loop.set_default_executor(ClosingExecutor(thread_name_prefix="kame-oracle-call"))
        self._loop = loop
        try:
            self._main_task = loop.create_task(self._main())
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._main_task)
            assert self._client is not None
            loop.run_until_complete(self._client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        try:
            self._drain_inbox()
            while True:
                self._evaluate(time.monotonic())
                await asyncio.sleep(self.policy.poll_interval_s)
        finally:
            running = self._running
            if running is not None:
                self._cancel_running()
                # Bounded: the cancelled stream only closes its connection.
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(running.task), timeout=0.2)

    def _shutdown(self) -> None:
        if self._main_task is not None:
            self._main_task.cancel()

    def _drain_inbox(self) -> None:
        got_user_text = False
        while True:
            try:
                event = self._inbox.get_nowait()
            except queue.Empty:
                break
            got_user_text |= self._ingest(event)
        if got_user_text and self.restart.check_at_once(running=self._running is not None):
            self._evaluate(time.monotonic())

    def _ingest(self, event: Event) -> bool:
        conversation = self.conversation
        if isinstance(event, PartialTranscript):
            before = conversation.partial
            conversation.set_partial(event.text, event.audio_start)
            changed = bool(conversation.partial) and conversation.partial != before
            return self.restart.on_partial(conversation.partial, changed=changed, pause=event.pause)
        if isinstance(event, FinalTranscript):
            conversation.close_user_turn(event.text)
            return self.restart.on_final(event.text, running=self._running is not None)
        if isinstance(event, FrontendText):
            conversation.add_frontend_text(event.text)
        return False

    def _evaluate(self, now: float) -> None:
        """Ask the policy at `now`; start (or restart) a stream when it says so."""
        if self._closed:
            return
        reason = self.restart.decide(
            now, running=self._running is not None, user_words=self.conversation.user_words
        )
        if reason is not None:
            self._start(reason, now)

    def _start(self, reason: StartReason, now: float) -> None:
        self._cancel_running()
        self._generation += 1
        generation = self._generation
        conversation = self.conversation
        messages = build_messages(self.prompt, conversation.context, conversation.partial)
        self.restart.on_start(
            now, user_words=conversation.user_words, user_text=conversation.current_user_text
        )
        self._publish(
            OracleRequestStarted(
                t=self._clock.now(),
                generation=generation,
                reason=reason,
                user_text=conversation.current_user_text,
            )
        )
        assert self._loop is not None
        # --- [knowledge] begin: the request's words retrieve passages for its prompt, in `_stream`
        # (awaited there, so a restart cancels the retrieval with the stream); what the messages hold
        # is taken now, as they stand at the start.
        inform: Callable[[], Awaitable[list[dict[str, str]]]] | None = None
        if self._knowledge is not None:
            inform = functools.partial(
                self._knowledge.inform,
                generation,
                self.prompt,
                list(conversation.context),
                conversation.partial,
                conversation.current_user_text,
            )
        # --- [knowledge] end
        task = self._loop.create_task(self._stream(generation, messages, now, inform))
        self._running = _Stream(generation, task)

    def _cancel_running(self) -> None:
        # Runs on the loop thread between two awaits of the stream task, so once this returns the
        # cancelled stream cannot reach `_send` again (and `_is_live` guards it regardless).
        running, self._running = self._running, None
        if running is not None:
            running.task.cancel()

    def _is_live(self, generation: int) -> bool:
        return not self._closed and self._running is not None and self._running.generation == generation

    def _send(self, generation: int, command: OracleCommand) -> bool:
        if not self._is_live(generation):
            return False
        self._send_command(command)
        return True

    async def _stream(
        self,
        generation: int,
        messages: list[dict[str, str]],
        started: float,
        inform: Callable[[], Awaitable[list[dict[str, str]]]] | None = None,
    ) -> None:
        assert self._client is not None
        parts: list[str] = []
        outcome: Literal["completed", "cancelled", "failed"] = "failed"
        sent_any = False
        try:
            if inform is not None:  # [knowledge]: the messages with the retrieved passages
                messages = await inform()
            async with contextlib.aclosing(self._client.stream(messages)) as chunks:
                async for raw in chunks:
                    piece = raw.strip()
                    if not piece:
                        continue
                    if not self._is_live(generation):
                        outcome = "cancelled"
                        return
                    token_ids = tuple(self._tokenize(piece))
                    first = not sent_any
                    # Published before the commands go out, so every view sees the chunk before
                    # the front-end can report feeding it.
                    self._publish(
                        OracleChunk(
                            t=self._clock.now(),
                            generation=generation,
                            text=piece,
                            token_ids=token_ids,
                            first=first,
                            latency_ms=(time.monotonic() - started) * 1000.0,
                        )
                    )
                    if first:
                        self._send(generation, OracleReset(generation))
                        sent_any = True
                        self._mark_ok()
                    if token_ids:
                        self._send(generation, OracleAppend(generation, token_ids))
                    parts.append(raw)
            outcome = "completed"
            if self._is_live(generation):
                self.restart.on_completed()
            self._mark_ok()
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        # Whatever the LLM library or the server does wrong must end here: the audio goes on.
        except Exception as err:
            self._on_fault(err, generation, sent_any=sent_any, first_chunk_seen=bool(parts))
        finally:
            if self._running is not None and self._running.generation == generation:
                self._running = None
            self._publish(
                OracleFinished(
                    t=self._clock.now(), generation=generation, outcome=outcome, text="".join(parts).strip()
                )
            )
            if outcome == "completed" and self.restart.start_after_completion():
                self._evaluate(time.monotonic())

    def _on_fault(
        self, err: BaseException, generation: int, *, sent_any: bool, first_chunk_seen: bool
    ) -> None:
        assert self._client is not None
        fault: LlmFault = classify(
            err,
            where=self._client.where,
            key_env=self.llm.api_key_env,
            secret=self._client.api_key,
            first_chunk_seen=first_chunk_seen,
        )
        if sent_any and self._is_live(generation):
            # Withdraw what the front-end has not consumed yet of the broken answer: no oracle is
            # better than half of one. A new reset would feed a start token announcing an answer
            # that never comes, which the checkpoints were not trained on. The stream stops being
            # live first, so nothing of this generation can follow the clear.
            self._running = None
            self._send_command(OracleClear(generation))
        delay = self.restart.on_failed(time.monotonic())  # the same text is tried again after it
        self._health = fault.state
        self._publish(
            BackendStatus(
                t=self._clock.now(),
                component="llm",
                state=fault.state,
                message=f"{fault.message}; retrying in {delay:.1f} s",
            )
        )

    def _mark_ok(self) -> None:
        self.restart.on_answering()
        if self._health != "ok":
            self._health = "ok"
            assert self._client is not None
            self._publish(
                BackendStatus(
                    t=self._clock.now(),
                    component="llm",
                    state="ok",
                    message=f"{self._client.where} answering",
                )
            )

    def _publish(self, event: Event) -> None:
        self._events.publish(event)
