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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
    ToolCallFinished,
    ToolCallStarted,
)
from kame_cli.priority import deprioritize_current_thread

if TYPE_CHECKING:
    from kame_cli.backends.tools.calls import ToolCallRequest
    from kame_cli.backends.tools.config import ToolServerConfig
    from kame_cli.backends.tools.host import ToolHost, ToolResult
    from kame_cli.knowledge.retriever import Retriever

Tokenize = Callable[[str], list[int]]
Messages = list[dict[str, str]] | Callable[[], Awaitable[list[dict[str, str]]]]
"""A request's chat messages, or (with documents) how to retrieve the passages and build them."""


@dataclass(slots=True)
class _Stream:
    generation: int
    task: asyncio.Task[None]


@dataclass(slots=True)
class _Answer:
    """What one request has put into the oracle so far (LLM text and any bridge phrase)."""

    parts: list[str] = field(default_factory=list)
    sent_any: bool = False


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
        tools: Sequence[ToolServerConfig] = (),
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
        self._tool_servers = tuple(tools)
        self._tools: ToolHost | None = None
        self._tools_health: Literal["ok", "degraded", "error"] = "ok"
        self._tools_settled = threading.Event()
        # Everything below belongs to the loop thread.
        self.conversation = Conversation(hold_context=prompt.hold_context)
        self.restart = RestartPolicy(policy)
        self._generation = 0
        self._running: _Stream | None = None
        self._health: Literal["unknown", "ok", "degraded", "error"] = "unknown"

    # --- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        """Import LiteLLM (about 2 s, so before audio starts) and start the producer's thread; with
        tools, import the MCP SDK too and wait until every tool server has started or failed to
        (bounded by their `start_timeout_s`), so that the first request already has the tools."""
        if self._thread is not None:
            raise RuntimeError("OracleProducer.start() called twice")
        self._client = LlmClient(self.llm, self._api_base)
        if self._tool_servers:
            from kame_cli.backends.tools.host import import_sdk

            import_sdk()  # 1-2 s of imports that would otherwise block the loop's first polls
        self._thread = threading.Thread(target=self._run, name="kame-oracle", daemon=False)
        self._thread.start()
        self._ready.wait(timeout=5.0)
        if self._tool_servers:
            self._tools_settled.wait(timeout=max(s.start_timeout_s for s in self._tool_servers) + 1.0)

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
            if self._tools is not None:
                loop.run_until_complete(self._tools.close())
            assert self._client is not None
            loop.run_until_complete(self._client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        if self._tool_servers:
            from kame_cli.backends.tools.host import ToolHost

            self._tools = ToolHost(self._tool_servers, self._tool_status)
            self._tools.start()  # a server not ready yet (past start()'s wait) is offered once it is
            settling = asyncio.get_running_loop().create_task(self._tools.settled())
            settling.add_done_callback(lambda _task: self._tools_settled.set())
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
        # The conversation is taken as it stands now. With documents, the passages are retrieved in
        # `_stream`, so a restart cancels the retrieval along with the stream.
        messages: Messages
        if self._knowledge is None:
            messages = build_messages(self.prompt, conversation.context, conversation.partial)
        else:
            messages = functools.partial(
                self._knowledge.inform,
                generation,
                self.prompt,
                list(conversation.context),
                conversation.partial,
                conversation.current_user_text,
            )
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
        task = self._loop.create_task(self._stream(generation, messages, now))
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
        messages: Messages,
        started: float,
    ) -> None:
        assert self._client is not None
        answer = _Answer()
        outcome: Literal["completed", "cancelled", "failed"] = "failed"
        try:
            if callable(messages):  # the messages with the passages the request's words retrieve
                messages = await messages()
            if not await self._answer(generation, messages, started, answer):
                outcome = "cancelled"
                return
            outcome = "completed"
            if self._is_live(generation):
                self.restart.on_completed()
            self._mark_ok()
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        # Whatever the LLM library or the server does wrong must end here: the audio goes on.
        except Exception as err:
            self._on_fault(err, generation, sent_any=answer.sent_any, first_chunk_seen=bool(answer.parts))
        finally:
            if self._running is not None and self._running.generation == generation:
                self._running = None
            self._publish(
                OracleFinished(
                    t=self._clock.now(),
                    generation=generation,
                    outcome=outcome,
                    text="".join(answer.parts).strip(),
                )
            )
            if outcome == "completed" and self.restart.start_after_completion():
                self._evaluate(time.monotonic())

    async def _answer(
        self, generation: int, messages: list[dict[str, str]], started: float, answer: _Answer
    ) -> bool:
        """Stream the LLM's answer into the oracle, running the tools it calls on the way; False if
        the request stopped being live (a restart) before it ended."""
        from kame_cli.backends.tools.calls import ToolCallDeltas, assistant_message, tool_message

        assert self._client is not None
        history: list[dict[str, Any]] = list(messages)
        schemas = self._tools.schemas() if self._tools is not None else []
        rounds = 0
        while True:
            calls = ToolCallDeltas()
            # Past the last round the LLM may still see the tools, but must answer in words.
            choice = "none" if rounds >= self.llm.max_tool_rounds else None
            said = len(answer.parts)
            # Without tools offered, a call the LLM makes up anyway is ignored, not run.
            stream = self._client.stream(
                history, tools=schemas, tool_choice=choice, calls=calls if schemas else None
            )
            async with contextlib.aclosing(stream) as chunks:
                async for raw in chunks:
                    if not self._emit(generation, raw, started, answer):
                        return False
            requests = calls.requests()
            if not requests or rounds >= self.llm.max_tool_rounds:
                return True
            rounds += 1
            history.append(assistant_message("".join(answer.parts[said:]), requests))
            if (
                rounds == 1
                and self.prompt.tool_bridge
                and not self._emit(generation, self.prompt.tool_bridge + " ", started, answer)
            ):
                return False
            for request in requests:
                result = await self._run_tool(generation, request)
                history.append(tool_message(request, result.text))
            if not self._is_live(generation):
                return False

    def _emit(self, generation: int, raw: str, started: float, answer: _Answer) -> bool:
        """Write one piece of the answer into the oracle; False once the request is not live."""
        piece = raw.strip()
        if not piece:
            return True
        if not self._is_live(generation):
            return False
        token_ids = tuple(self._tokenize(piece))
        first = not answer.sent_any
        # Published before the commands go out, so every view sees the chunk before the front-end
        # can report feeding it.
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
            answer.sent_any = True
            self._mark_ok()
        if token_ids:
            self._send(generation, OracleAppend(generation, token_ids))
        answer.parts.append(raw)
        return True

    async def _run_tool(self, generation: int, request: ToolCallRequest) -> ToolResult:
        """One tool call with its events; a restart cancels it here (the MCP request with it)."""
        assert self._tools is not None
        server = self._tools.server_of(request.name)
        call = (generation, request.call_id, server, request.name)
        self._publish(ToolCallStarted(self._clock.now(), *call, request.shown_arguments()))
        began = time.monotonic()
        result: ToolResult | None = None
        try:
            result = await self._tools.call(request)
            return result
        finally:
            took_ms = (time.monotonic() - began) * 1000.0
            if result is None:  # cancelled: a restart superseded the request
                ended = ToolCallFinished(self._clock.now(), *call, "cancelled", took_ms, 0, False, "restart")
            else:
                ended = ToolCallFinished(
                    self._clock.now(),
                    *call,
                    result.outcome,
                    took_ms,
                    result.chars,
                    result.truncated,
                    result.message,
                )
            self._publish(ended)
            if result is not None:
                self._tool_call_status(request, result)

    def _tool_call_status(self, request: ToolCallRequest, result: ToolResult) -> None:
        if result.outcome != "ok":
            self._tool_status(
                "degraded", f"{request.name} {result.outcome}: {result.message}; the oracle went on"
            )
        elif self._tools_health != "ok":
            self._tool_status("ok", f"{request.name} answered")

    def _tool_status(self, state: Literal["ok", "degraded", "error"], message: str) -> None:
        self._tools_health = state
        self._publish(BackendStatus(t=self._clock.now(), component="tools", state=state, message=message))

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
