"""`kame talk` with `[knowledge]`, end to end: the back-end indexes the documents before the oracle
starts (and says so), the spoken question's request carries the passage that answers it, the log
holds the retrieval; a bad document path stops the session before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.knowledge.documents import write_documents
from tests.session.conftest import cpu_profile, read_events, run_kame, write_wav
from tests.support.llm_server import FaultyOpenAI
from tests.support.speech import concat, synthesize

RETURNS_SOURCE = "[source: handbook.md > Acme handbook > Returns]"


def _profile(folder: Path, api_base: str, documents: list[str]) -> Path:
    names = ", ".join(json.dumps(d) for d in documents)
    return cpu_profile(
        folder / "help-line.toml",
        "a help line that knows the handbook",
        f'[llm]\nprovider = "openai"\nmodel = "fake"\napi_base = "{api_base}"\nmax_tokens = 16\n'
        f'[knowledge]\ndocuments = [{names}]\nindex = "index.sqlite"\n',
    )


def test_a_spoken_question_reaches_the_llm_with_the_passage_that_answers_it(tmp_path: Path) -> None:
    write_documents(tmp_path)
    question = concat([0.3, synthesize("How many days do I have to return the kettle?"), 2.5])
    wav = write_wav(tmp_path / "question.wav", question)
    with FaultyOpenAI(pieces=["Within", " forty five days."]) as server:
        profile = _profile(tmp_path, server.api_base, ["docs/**/*"])
        done = run_kame(
            "talk",
            "--profile",
            str(profile),
            "--input",
            str(wav),
            "--no-ui",
            "--log-dir",
            str(tmp_path / "log"),
        )
        bodies = [body for _, path, body in server.requests if path.endswith("/chat/completions")]
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kame: knowledge: indexing handbook.md (1 of 4)" in done.stderr
    assert "knowledge: index ready: 4 documents" in done.stderr
    assert (tmp_path / "index.sqlite").is_file()
    informed = [b for b in bodies if RETURNS_SOURCE in b["messages"][-1]["content"]]
    assert informed, f"no request carried the returns passage: {[b['messages'][-1] for b in bodies]}"
    assert "within 45 days of delivery" in informed[-1]["messages"][-1]["content"]
    retrievals = [e for e in read_events(tmp_path / "log" / "events.jsonl") if e["type"] == "Retrieval"]
    assert retrievals and retrievals[-1]["sources"][0] == "handbook.md > Acme handbook > Returns"
    requests = [
        e for e in read_events(tmp_path / "log" / "events.jsonl") if e["type"] == "OracleRequestStarted"
    ]
    assert {r["generation"] for r in retrievals} <= {r["generation"] for r in requests}


def test_a_bad_document_path_stops_the_session_before_anything_is_written(tmp_path: Path) -> None:
    write_documents(tmp_path)
    wav = write_wav(tmp_path / "question.wav", concat([0.5]))
    profile = _profile(tmp_path, "http://127.0.0.1:9/v1", ["docs/handbook.md", "docs/price-list.md"])
    done = run_kame(
        "talk", "--profile", str(profile), "--input", str(wav), "--no-ui", "--log-dir", str(tmp_path / "log")
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("kame: error: ") and "help-line.toml: [knowledge] documents: " in lines[0]
    assert f"{tmp_path / 'docs' / 'price-list.md'} does not exist" in lines[0]
    assert not (tmp_path / "log").exists() and not (tmp_path / "index.sqlite").exists()
