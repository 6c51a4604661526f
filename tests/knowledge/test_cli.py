"""`kame knowledge index PROFILE`: a JSON summary, only changed documents read again, and every bad
document path one line on stderr, exit 2, with no index written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kame_cli.cli import run
from tests.knowledge.documents import write_documents

ROOT = Path(__file__).resolve().parents[2]


def write_profile(folder: Path, documents: list[str], extra: str = "") -> Path:
    """A profile in `folder` whose [knowledge] names `documents` (relative to it) and an index beside it."""
    profile = folder / "mine.toml"
    names = ", ".join(json.dumps(d) for d in documents)
    profile.write_text(
        '[llm]\nprovider = "openai"\nmodel = "m"\napi_base = "http://127.0.0.1:9/v1"\n\n'
        f'[knowledge]\ndocuments = [{names}]\nindex = "index.sqlite"\n{extra}',
        encoding="utf-8",
    )
    return profile


def test_index_builds_then_reads_only_what_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_documents(tmp_path)
    profile = write_profile(tmp_path, ["docs/**/*"])
    assert run(["knowledge", "index", str(profile), "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["files"] == 4 and summary["passages"] >= 4
    assert sorted(summary["indexed"]) == ["handbook.md", "sheets/blender.pdf", "support.txt", "warranty.html"]
    assert summary["index"] == str(tmp_path / "index.sqlite")
    assert "4 documents" in err
    assert run(["knowledge", "index", str(profile), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["indexed"] == []


@pytest.mark.parametrize(
    ("documents", "says"),
    [
        (["docs/nothing-*.md"], "matches no document"),
        (["docs/missing.md"], "does not exist"),
        (["docs"], "is a folder"),
        (["docs/image.png"], "is not a supported document type"),
        (["docs/broken.pdf"], "not a readable PDF"),
        (["docs/latin1.txt"], "not UTF-8 text"),
        ([], "[knowledge] documents: none named"),
    ],
)
def test_a_bad_document_path_is_one_line_and_exit_2_with_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], documents: list[str], says: str
) -> None:
    docs = write_documents(tmp_path)
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is no PDF at all\n")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    profile = write_profile(tmp_path, documents)
    assert run(["knowledge", "index", str(profile)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kame: error: ") and says in err, err
    assert not (tmp_path / "index.sqlite").exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_an_unreadable_document_is_one_line_and_exit_2(tmp_path: Path) -> None:
    docs = write_documents(tmp_path)
    secret = docs / "handbook.md"
    secret.chmod(0)
    profile = write_profile(tmp_path, ["docs/*.md", "docs/*.txt"])
    # Root reads any file through two capabilities: the command runs without them.
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*drop, sys.executable, "-m", "kame_cli.cli", "knowledge", "index", str(profile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{secret} cannot be read (Permission denied)" in done.stderr
    assert not (tmp_path / "index.sqlite").exists()
