"""`kame bench oracle`: time to first token through LiteLLM and through the oracle producer,
against a plain HTTP stream to the same server, in one run.

Three paths per round, in rotating order so load on the machine hits them alike:
- direct: httpx streaming the server's own API (OpenAI SSE, or Ollama NDJSON); request to the first
  chunk with text (every path reads its stream to the end, so the next one finds the server idle).
- litellm: the same request through `LlmClient` (LiteLLM); request to the first chunk with text.
- producer: a `PartialTranscript` handed to a running `OracleProducer` to its first `OracleAppend`
  (policy, prompt building, LiteLLM, tokenizing, the thread hop).
- informed (a profile with `[knowledge]`): the same through a second producer that retrieves
  passages from the documents for each request; its `Retrieval` events time the retrieval itself.
By default the bench starts the offline profile's llama.cpp server (SmolLM2-135M, 1 thread) itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from kame_cli.errors import RuntimeFailure
from kame_cli.stats import percentile

if TYPE_CHECKING:
    from kame_cli.profiles import Profile


class BenchFailed(RuntimeFailure):
    """The server stopped answering during the bench: one line, exit 1."""


OVERHEAD_TARGET_PCT = 10.0
RETRIEVAL_TARGET_MS = 30.0
"""Issue 34's bound on what retrieval (FTS5, this CPU) may add before an informed request leaves."""
_QUESTIONS = [
    "what is the capital of france",
    "how many legs does a spider have",
    "tell me the boiling point of water",
    "who wrote romeo and juliet",
    "what is two plus two",
]


@dataclass
class OracleBenchResult:
    """Milliseconds per path and round."""

    target: str
    direct_ms: list[float] = field(default_factory=list)
    litellm_ms: list[float] = field(default_factory=list)
    producer_ms: list[float] = field(default_factory=list)
    producer_request_ms: list[float] = field(default_factory=list)
    """Inside the producer: its request's start to the first chunk (its own TTFT)."""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    informed_ms: list[float] = field(default_factory=list)
    """[knowledge] The producer with retrieval: partial to first append."""
    retrieval_ms: list[float] = field(default_factory=list)
    """[knowledge] Each informed request's retrieval: its start to its messages being ready, the
    time retrieval adds before the request leaves."""
    notes_chars: list[int] = field(default_factory=list)


def _overhead_pct(values: list[float], base: list[float]) -> float:
    """Median of the per-round differences, over the median of the base: rounds pair the paths, so
    drift in the machine's load cancels out."""
    paired = [value - ref for value, ref in zip(values, base, strict=True)]
    return statistics.median(paired) / statistics.median(base) * 100.0


def figures(result: OracleBenchResult) -> dict[str, object]:
    """The figures as one JSON-ready object (`--json`), in milliseconds."""
    out: dict[str, object] = {"target": result.target, "runs": len(result.direct_ms)}
    for name, values in (
        ("direct_ttft", result.direct_ms),
        ("litellm_ttft", result.litellm_ms),
        ("producer_request_ttft", result.producer_request_ms),
        ("producer_partial_to_append", result.producer_ms),
    ):
        for q in (50, 95, 99):
            out[f"{name}_p{q}_ms"] = round(percentile(values, q), 2) if values else None
    out["litellm_overhead_pct"] = round(_overhead_pct(result.litellm_ms, result.direct_ms), 2)
    out["producer_overhead_pct"] = round(_overhead_pct(result.producer_ms, result.direct_ms), 2)
    out["load_before"] = list(result.load_before)
    out["load_after"] = list(result.load_after)
    if result.informed_ms:  # [knowledge]
        for q in (50, 95, 99):
            out[f"informed_partial_to_append_p{q}_ms"] = round(percentile(result.informed_ms, q), 2)
        for q in (50, 95):
            out[f"retrieval_added_ms_p{q}"] = round(percentile(result.retrieval_ms, q), 3)
        paired = [a - b for a, b in zip(result.informed_ms, result.producer_ms, strict=True)]
        out["knowledge_added_ms_p50"] = round(statistics.median(paired), 2)
        out["notes_chars_mean"] = round(statistics.fmean(result.notes_chars), 1)
    return out


def report(result: OracleBenchResult) -> str:
    """The figures as a plain-text table."""
    lines = [
        f"oracle bench: {result.target}",
        f"{'path':<34}{'n':>4}{'p50':>9}{'p95':>9}{'p99':>9}{'mean':>9}  vs direct (paired median)",
    ]
    rows = [
        ("direct HTTP stream, TTFT", result.direct_ms),
        ("LiteLLM stream, TTFT", result.litellm_ms),
        ("producer: request -> first chunk", result.producer_request_ms),
        ("producer: partial -> first append", result.producer_ms),
    ]
    for label, values in rows:
        if not values:
            continue
        overhead = "" if values is result.direct_ms else f"{_overhead_pct(values, result.direct_ms):+.1f} %"
        lines.append(
            f"{label:<34}{len(values):>4}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}"
            f"{percentile(values, 99):>9.1f}{statistics.fmean(values):>9.1f}  {overhead}"
        )
    if result.informed_ms:  # [knowledge]
        values = result.informed_ms
        lines.append(
            f"{'informed: partial -> first append':<34}{len(values):>4}{percentile(values, 50):>9.1f}"
            f"{percentile(values, 95):>9.1f}{percentile(values, 99):>9.1f}{statistics.fmean(values):>9.1f}"
        )
        paired = statistics.median(a - b for a, b in zip(values, result.producer_ms, strict=True))
        p50, p95 = percentile(result.retrieval_ms, 50), percentile(result.retrieval_ms, 95)
        verdict = "meets" if p50 <= RETRIEVAL_TARGET_MS else "misses"
        chars = statistics.fmean(result.notes_chars)
        lines.append(
            f"retrieval added p50 {p50:.2f} ms, p95 {p95:.2f} ms: {verdict} the "
            f"<= {RETRIEVAL_TARGET_MS:g} ms target; with the notes' {chars:.0f} characters read by the "
            "LLM, informed vs plain "
            f"{paired:+.1f} ms (paired median)"
        )
    litellm = _overhead_pct(result.litellm_ms, result.direct_ms)
    verdict = "meets" if litellm <= OVERHEAD_TARGET_PCT else "misses"
    lines.append(
        f"LiteLLM overhead {litellm:+.1f} % (paired): {verdict} the <= {OVERHEAD_TARGET_PCT:g} % target"
    )
    before = ", ".join(f"{x:.2f}" for x in result.load_before)
    after = ", ".join(f"{x:.2f}" for x in result.load_after)
    lines.append(
        f"load average before: {before}; after: {after} ({os.cpu_count()} CPUs; other load skews all paths)"
    )
    return "\n".join(lines)


def _tokenizer() -> Any:
    """The `random:tiny` front-end's real sentencepiece model: tokenizing is part of the producer's path."""
    import sentencepiece as spm

    from kame_cli.engine.builtin import train_tiny_tokenizer

    return spm.SentencePieceProcessor(model_proto=train_tiny_tokenizer())


class _Direct:
    """The server's own streaming API over httpx, no LiteLLM."""

    def __init__(self, profile: Profile, api_base: str | None, api_key: str | None) -> None:
        import httpx

        from kame_cli.backends.oracle.config import OLLAMA_PROVIDERS

        llm = profile.llm
        self.ollama = llm.provider in OLLAMA_PROVIDERS
        if self.ollama:
            base = (api_base or "http://127.0.0.1:11434").rstrip("/")
            self.url = f"{base}/api/chat"
        elif llm.provider in ("openai", "hosted_vllm", "lm_studio", "llamafile"):
            self.url = f"{(api_base or 'https://api.openai.com/v1').rstrip('/')}/chat/completions"
        else:
            from kame_cli.errors import ConfigError

            raise ConfigError(
                f"the direct comparison speaks OpenAI's or Ollama's API, not {llm.provider}: "
                "bench an openai/ollama profile (default: offline)"
            )
        self.llm = llm
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(timeout=llm.timeout_s, headers=headers)

    def body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        llm = self.llm
        if self.ollama:
            options = {k: v for k, v in llm.extra.items() if k != "keep_alive"}
            options.update(num_predict=llm.max_tokens, temperature=llm.temperature)
            body: dict[str, Any] = {
                "model": llm.model,
                "messages": messages,
                "stream": True,
                "options": options,
            }
            if "keep_alive" in llm.extra:
                body["keep_alive"] = llm.extra["keep_alive"]
            return body
        body = {
            "model": llm.model,
            "messages": messages,
            "stream": True,
            "max_tokens": llm.max_tokens,
            "temperature": llm.temperature,
        }
        body.update(llm.extra.get("extra_body", {}))
        return body

    async def first_text_ms(self, messages: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        first: float | None = None
        async with self.client.stream("POST", self.url, json=self.body(messages)) as response:
            response.raise_for_status()
            # Read to the end, as the producer does: a stream closed early keeps the server busy a
            # little longer and would slow whichever path comes next.
            async for line in response.aiter_lines():
                if first is None and self._text(line).strip():
                    first = (time.perf_counter() - started) * 1000.0
        if first is None:
            raise BenchFailed("the stream ended without text")
        return first

    def _text(self, line: str) -> str:
        if self.ollama:
            return json.loads(line).get("message", {}).get("content", "") if line.strip() else ""
        if not line.startswith("data: ") or line.strip() == "data: [DONE]":
            return ""
        choices = json.loads(line[6:]).get("choices") or [{}]
        return choices[0].get("delta", {}).get("content") or ""


class _ProducerProbe:
    """Receives the producer's commands; marks the first append after it is armed."""

    def __init__(self) -> None:
        self.first_append = threading.Event()
        self.stamp = 0.0

    def send(self, command: Any) -> None:
        from kame_cli.events import OracleAppend

        if isinstance(command, OracleAppend) and not self.first_append.is_set():
            self.stamp = time.perf_counter()
            self.first_append.set()


def run_oracle_bench(profile_name: str, runs: int, warmup: int, max_tokens: int) -> OracleBenchResult:
    """Measure the three paths `runs` times each (after `warmup` unrecorded rounds)."""
    from kame_cli.backends.oracle.config import resolve_api_key
    from kame_cli.backends.oracle.llm import LlmClient
    from kame_cli.backends.oracle.producer import OracleProducer
    from kame_cli.backends.oracle.prompt import build_messages
    from kame_cli.bus import EventBus
    from kame_cli.events import OracleChunk, OracleFinished, Retrieval
    from kame_cli.profiles import check_environment, load_profile, prepare_llm_backend

    profile = load_profile(profile_name)
    check_environment(profile)
    llm = dataclasses.replace(profile.llm, max_tokens=max_tokens)
    profile = dataclasses.replace(profile, llm=llm)
    tokenizer = _tokenizer()
    result = OracleBenchResult(target=f"{profile.name}: {llm.litellm_model}", load_before=os.getloadavg())

    with prepare_llm_backend(profile) as api_base:
        result.target += f" at {api_base or 'the provider default'}"
        loop = asyncio.new_event_loop()
        client = LlmClient(llm, api_base)
        direct = _Direct(profile, api_base or llm.api_base, resolve_api_key(llm, api_base))
        bus = EventBus()
        finished = bus.subscribe("bench", maxsize=0, accept=lambda e: isinstance(e, OracleFinished))
        chunks = bus.subscribe("chunks", maxsize=0, accept=lambda e: isinstance(e, OracleChunk) and e.first)
        probe = _ProducerProbe()
        producer = _started_producer(profile, llm, tokenizer, bus, api_base, probe)
        informed, informed_probe, retrievals = _informed_producer(profile, llm, tokenizer, bus, api_base)

        async def litellm_ms(messages: list[dict[str, str]]) -> float:
            started = time.perf_counter()
            first: float | None = None
            async for text in client.stream(messages):
                if first is None and text.strip():
                    first = (time.perf_counter() - started) * 1000.0
            if first is None:
                raise BenchFailed("the stream ended without text")
            return first

        def producer_ms(text: str, producer: OracleProducer, probe: _ProducerProbe) -> tuple[float, float]:
            from kame_cli.events import PartialTranscript

            probe.first_append.clear()
            finished.drain()
            chunks.drain()
            started = time.perf_counter()
            producer.on_event(PartialTranscript(t=0.0, committed=text, tentative="", audio_end=0.0))
            if not probe.first_append.wait(timeout=llm.timeout_s + 5.0):
                raise BenchFailed("the producer sent no oracle append: is the LLM server answering?")
            elapsed = (probe.stamp - started) * 1000.0
            # Let its stream end, so it does not compete with the next path for the server.
            deadline = time.monotonic() + llm.timeout_s
            while not finished.drain() and time.monotonic() < deadline:
                time.sleep(0.005)
            first = [e.latency_ms for e in chunks.drain() if isinstance(e, OracleChunk)]
            return elapsed, first[-1] if first else float("nan")

        try:
            requests = 0
            questions = _QUESTIONS if informed is None else _document_questions(profile)
            for round_index in range(warmup + runs):
                question = questions[round_index % len(questions)]
                paths = ["direct", "litellm", "producer"] + ([] if informed is None else ["informed"])
                shift = round_index % len(paths)
                for path in paths[shift:] + paths[:shift]:
                    # Each request differs from the one before at the same place (the number first):
                    # the server's prompt cache then helps every path alike, as it does consecutive
                    # restarts in a session, whose prompts share the conversation before the user line.
                    requests += 1
                    text = f"{requests}. {question}"
                    messages = build_messages(profile.prompt, [], text)
                    if path == "direct":
                        ms = loop.run_until_complete(direct.first_text_ms(messages))
                        target = result.direct_ms
                    elif path == "litellm":
                        ms = loop.run_until_complete(litellm_ms(messages))
                        target = result.litellm_ms
                    elif path == "producer":
                        ms, request_ms = producer_ms(text, producer, probe)
                        target = result.producer_ms
                        if round_index >= warmup:
                            result.producer_request_ms.append(request_ms)
                    else:
                        assert informed is not None and retrievals is not None
                        retrievals.drain()
                        ms, _ = producer_ms(text, informed, informed_probe)
                        target = result.informed_ms
                        if round_index >= warmup:
                            # This round's: a late event of an earlier request may come with it.
                            retrieval = [
                                e for e in retrievals.drain() if isinstance(e, Retrieval) and e.query == text
                            ][-1]
                            result.retrieval_ms.append(retrieval.duration_ms)
                            result.notes_chars.append(retrieval.chars)
                    if round_index >= warmup:
                        target.append(ms)
        finally:
            producer.stop(timeout=2.0)
            if informed is not None:
                informed.stop(timeout=2.0)
            loop.run_until_complete(direct.client.aclose())
            loop.run_until_complete(client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    result.load_after = os.getloadavg()
    return result


def _informed_producer(
    profile: Profile, llm: Any, tokenizer: Any, bus: Any, api_base: str | None
) -> tuple[Any, _ProducerProbe, Any]:
    """[knowledge] A second producer that retrieves from the profile's documents (its index made or
    refreshed first), its probe, and a subscription to its `Retrieval` events; (None, probe, None)
    without `[knowledge]`."""
    probe = _ProducerProbe()
    if not profile.knowledge.documents:
        return None, probe, None
    from kame_cli.clock import SessionClock
    from kame_cli.events import Retrieval
    from kame_cli.knowledge.session import open_retriever, prepare_index

    prepare_index(profile.knowledge, lambda line: typer.echo(line, err=True))
    retrievals = bus.subscribe("retrievals", maxsize=0, accept=lambda e: isinstance(e, Retrieval))
    clock = SessionClock()
    knowledge = open_retriever(profile.knowledge, events=bus, clock=clock)
    informed = _started_producer(profile, llm, tokenizer, bus, api_base, probe, clock, knowledge)
    return informed, probe, retrievals


def _started_producer(
    profile: Profile,
    llm: Any,
    tokenizer: Any,
    bus: Any,
    api_base: str | None,
    probe: _ProducerProbe,
    clock: Any = None,
    knowledge: Any = None,
) -> Any:
    from kame_cli.backends.oracle.producer import OracleProducer
    from kame_cli.clock import SessionClock

    producer = OracleProducer(
        llm,
        # Each round's partial is a new text of about the same length: under the reference rule a
        # finished answer stays current until 2 more words come, so the producer would send
        # nothing. The path is what is timed here, not the rule.
        dataclasses.replace(profile.policy, after_finish="any_change"),
        profile.prompt,
        tokenize=tokenizer.encode,
        send=probe.send,
        events=bus,
        clock=clock or SessionClock(),
        api_base=api_base,
        knowledge=knowledge,
    )
    producer.start()
    return producer


def _document_questions(profile: Profile) -> list[str]:
    """[knowledge] Questions about the documents' own sections ("what about returns and refunds"),
    so that every informed request carries notes, as a user asking about their documents would."""
    from kame_cli.knowledge.index import KnowledgeIndex, default_index_path

    index = KnowledgeIndex(default_index_path(profile.knowledge))
    headings = index.headings()
    return [f"what about {heading.split(' > ')[-1].lower()}" for heading in headings] or _QUESTIONS


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("oracle")
    def oracle(
        profile: str = typer.Option("offline", help="Profile name or path; offline starts its own server."),
        runs: int = typer.Option(20, min=2, help="Measured rounds (each path once per round)."),
        warmup: int = typer.Option(2, min=0, help="Unrecorded rounds first."),
        max_tokens: int = typer.Option(16, min=1, help="Tokens per answer (only the first one is timed)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (table: stderr)."),
    ) -> None:
        """Time to first token: direct HTTP vs LiteLLM vs the oracle producer (partial -> append)."""
        result = run_oracle_bench(profile, runs, warmup, max_tokens)
        typer.echo(report(result), err=as_json)
        if as_json:
            typer.echo(json.dumps(figures(result)))
