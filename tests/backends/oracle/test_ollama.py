"""The Ollama route (`ollama_chat/...` through LiteLLM) and the ollama-client comforts, over HTTP
against a loopback server that speaks Ollama's wire format."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from kame_cli.backends.oracle.config import LlmConfig, PolicyConfig
from kame_cli.backends.oracle.errors import LlmServerError
from kame_cli.backends.oracle.ollama import check_ollama_model, installed_models, pull_ollama_model
from kame_cli.cli import run
from kame_cli.errors import ModelNotAvailableError
from kame_cli.events import FinalTranscript, FrontendText, OracleChunk, OracleFinished, OracleRequestStarted
from tests.backends.oracle.harness import oracle_content, partial, running_producer
from tests.support.llm_server import FakeOllama, OllamaState, PullLayer, free_port


def _ollama_llm(base: str, **overrides: object) -> LlmConfig:
    settings: dict[str, object] = {
        "provider": "ollama_chat",
        "model": "llama3.2",
        "api_base": base,
        "max_tokens": 33,
        "extra": {"num_ctx": 2048, "keep_alive": "5m"},
    }
    settings.update(overrides)
    return LlmConfig(**settings)  # type: ignore[arg-type]


def test_ollama_chat_streams_into_the_oracle(tokenizer) -> None:
    state = OllamaState(
        models={"llama3.2:latest"}, reply=lambda body: ["Paris", " is the", " capital", ".", " "]
    )
    with FakeOllama(state) as ollama:
        llm = _ollama_llm(ollama.url)
        with running_producer(llm, tokenizer=tokenizer, api_base=None) as (producer, rec):
            producer.on_event(FinalTranscript(t=0.0, text="hello there", audio_start=0.0, audio_end=1.0))
            for piece in ["\u2581Hi", "!", "\u2581How", "\u2581can", "\u2581I", "\u2581help?"]:
                producer.on_event(FrontendText(t=0.0, step=0, text=piece))
            rec.wait(
                lambda r: any(e.generation == 1 for e in r.of(OracleFinished)), timeout=10, what="answer 1"
            )
            producer.on_event(partial("what is the capital of"))
            rec.wait(
                lambda r: any(e.generation == 2 for e in r.of(OracleFinished)), timeout=10, what="answer 2"
            )
        chats = [body for method, path, body in ollama.requests if path == "/api/chat"]

    assert [e.outcome for e in rec.of(OracleFinished)] == ["completed", "completed"]
    expected = [t for piece in ["Paris", "is the", "capital", "."] for t in tokenizer.encode(piece)]
    assert oracle_content(rec.commands) == (2, expected)
    assert [c.text for c in rec.of(OracleChunk) if c.generation == 2] == ["Paris", "is the", "capital", "."]
    # What went over the wire: Ollama's own chat request, options mapped by LiteLLM.
    assert len(chats) == 2
    last = chats[-1]
    assert last["model"] == "llama3.2" and last["stream"] is True
    assert last["options"]["num_predict"] == 33 and last["options"]["num_ctx"] == 2048
    system, user = last["messages"]
    assert system["role"] == "system" and "assistant" in system["content"]
    assert (
        "User: hello there\nAssistant: Hi! How can I help?\nUser: what is the capital of" in user["content"]
    )


def test_restart_closes_the_ollama_request(tokenizer) -> None:
    state = OllamaState(models={"llama3.2:latest"}, reply=lambda body: [f" w{i}" for i in range(200)])
    state.chunk_delay_s = 0.02
    with FakeOllama(state) as ollama:
        llm = _ollama_llm(ollama.url)
        policy = PolicyConfig(poll_interval_s=0.05)
        with running_producer(llm, policy, tokenizer=tokenizer, api_base=None) as (producer, rec):
            producer.on_event(partial("tell me"))
            rec.wait(lambda r: len(r.of(OracleChunk)) >= 3, timeout=10, what="the first chunks")
            producer.on_event(partial("tell me about the sea"))
            rec.wait(lambda r: len(r.of(OracleRequestStarted)) == 2, timeout=5, what="the restart")
            deadline = time.monotonic() + 3.0
            while state.chats_disconnected < 1:
                assert time.monotonic() < deadline, "the cancelled request's connection stayed open"
                time.sleep(0.02)
    assert state.chats_completed == 0  # neither stream ran to its end: the second was stopped too


def test_model_check_and_pull_with_progress() -> None:
    state = OllamaState(
        models={"qwen2.5:0.5b"}, pull_layers=[PullLayer(size=5_000_000, steps=5), PullLayer(size=300)]
    )
    with FakeOllama(state) as ollama:
        assert installed_models(ollama.url) == ["qwen2.5:0.5b"]
        assert "qwen2.5:0.5b" in check_ollama_model(ollama.url, "qwen2.5:0.5b")
        with pytest.raises(
            ModelNotAvailableError, match=r"no model llama3\.2:latest.*kame profiles check demo --pull"
        ):
            check_ollama_model(ollama.url, "llama3.2", profile_name="demo")

        out = io.StringIO()
        pull_ollama_model(ollama.url, "llama3.2", console=Console(file=out, width=100, force_terminal=False))
        assert "llama3.2:latest" in installed_models(ollama.url)
        assert "llama3.2:latest" in check_ollama_model(ollama.url, "llama3.2")
        pulls = [body for _, path, body in ollama.requests if path == "/api/pull"]
    assert pulls == [{"model": "llama3.2", "insecure": False, "stream": True}]
    shown = out.getvalue()
    assert "success" in shown and "5.0 MB" in shown


def test_check_reports_a_server_that_is_down() -> None:
    with pytest.raises(
        LlmServerError, match=r"no Ollama server answers at http://127\.0\.0\.1:\d+.*ollama serve"
    ):
        check_ollama_model(f"http://127.0.0.1:{free_port()}", "llama3.2")


def test_profiles_check_pulls_a_missing_model(tmp_path, capsys) -> None:
    state = OllamaState(models=set())
    with FakeOllama(state) as ollama:
        profile = tmp_path / "local.toml"
        profile.write_text(
            f'[llm]\nprovider = "ollama_chat"\nmodel = "llama3.2:1b"\napi_base = "{ollama.url}"\n'
        )
        assert run(["profiles", "check", str(profile)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no model llama3.2:1b" in err and "--pull" in err
        assert run(["profiles", "check", str(profile), "--pull"]) == 0
        out = capsys.readouterr().out
        assert f"ok: Ollama at {ollama.url} answers and has llama3.2:1b" in out
        assert state.models == {"llama3.2:1b"}
