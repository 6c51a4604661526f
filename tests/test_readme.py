"""The README is the user's manual: its `kame ...` commands must work as written.

Each fenced `kame` command of README.md (and of the docs pages written with it) is either run,
when it needs no GPU, no network and no microphone, or has its command path and flags checked
against that command's own `--help`. The offline first run is run as the README gives it (with
`--fast`, so that the suite does not wait for real time), and its log goes through `kame plot`.
The README stays short, and neither it nor docs/ keeps dated run logs: figures carry their date in
a figures table's own column, and history lives in the commit messages.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from kame_cli.cli import run

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CHECKED_PAGES = (
    README,
    DOCS / "troubleshooting.md",
    DOCS / "echo.md",
    DOCS / "tandem.md",
    DOCS / "benchmarks.md",
    DOCS / "architecture.md",
)
"""The pages whose fenced commands are checked: the README and the docs written with it."""
MAX_README_LINES = 350

SHELL_LANGS = ("", "bash", "sh", "shell", "console")
RUN_IN_PROCESS = {("profiles", "list"), ("profiles", "show"), ("version",), ("devices",)}
"""Commands that need no GPU, network, microphone or model: run as they are written."""
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
HISTORY = ("for history", "earlier figures", "not adopted", "tried and not kept", "before this work")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    argv: tuple[str, ...]
    """The words after `kame`, comments removed."""

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}:kame {' '.join(self.argv)}"[:90]


def fenced_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and lang is None:
            lang, start, body = fence.group(1), number + 1, []
        elif fence:
            blocks.append(Block(page, start, lang or "", tuple(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def shell_words(line: str) -> list[str]:
    return shlex.split(line.strip().removeprefix("$ "), comments=True)


def kame_commands(pages: tuple[Path, ...] = CHECKED_PAGES) -> list[Command]:
    commands = []
    for page in pages:
        for block in fenced_blocks(page):
            if block.lang not in SHELL_LANGS:
                continue
            for offset, line in enumerate(block.lines):
                if re.match(r"\s*(\$ )?kame( |$)", line):
                    words = shell_words(line)
                    commands.append(Command(page, block.line + offset, tuple(words[1:])))
    return commands


@cache
def help_text(path: tuple[str, ...]) -> str:
    """`kame PATH --help`, in this process (Typer's help box, wide enough not to wrap flags)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run([*path, "--help"])
    assert code == 0, f"`kame {' '.join(path)} --help` exited {code}"
    return out.getvalue()


def subcommands(path: tuple[str, ...]) -> set[str]:
    text = help_text(path)
    panel = text.split("Commands ─", 1)[1] if "Commands ─" in text else ""
    return set(re.findall(r"^│ (\S+)\s", panel, re.M))


def split_command(argv: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the command path, e.g. ("bench", "tandem"); the arguments after it)."""
    path: tuple[str, ...] = ()
    rest = list(argv)
    while rest and rest[0] in subcommands(path):
        path += (rest.pop(0),)
    return path, tuple(rest)


def first_run_block() -> Block:
    blocks = [
        b
        for b in fenced_blocks(README)
        if any(re.match(r"kame talk --profile offline --input ", line) for line in b.lines)
    ]
    assert len(blocks) == 1, "the README's first run: one block with `kame talk --profile offline --input`"
    return blocks[0]


def _checked_commands() -> list[Command]:
    first_run = first_run_block()
    in_first_run = range(first_run.line, first_run.line + len(first_run.lines))
    return [c for c in kame_commands() if not (c.page == README and c.line in in_first_run)]


COMMANDS = _checked_commands()


def test_readme_is_a_short_manual() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move reference text to docs/"
    )
    assert "bash scripts/install.sh" in README.read_text()
    assert ".venv/bin/python -m pytest" in README.read_text()


def _tables(page: Path) -> list[list[str]]:
    """The page's markdown tables outside fenced code, each as its lines."""
    tables: list[list[str]] = []
    in_code = False
    current: list[str] = []
    for line in [*page.read_text().splitlines(), ""]:
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _dated_table_rows(page: Path) -> set[str]:
    """Rows of tables with a date column: the one place a figure's date belongs."""
    return {row for table in _tables(page) if "date" in table[0].lower() for row in table[2:]}


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_no_dated_run_logs(page: Path) -> None:
    """Figures carry their date in a figures table (one with a date column). Beside those, a docs
    page may say once when the output it shows was recorded; more dates are a run log (the README:
    none at all)."""
    allowed = _dated_table_rows(page)
    in_code = False
    dated: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        if DATE.search(line) and line not in allowed:
            dated.append(f"{page.name}:{number}: {line.strip()[:70]}")
        lowered = line.lower()
        assert not any(h in lowered for h in HISTORY), f"{page.name}:{number}: run history: {line[:80]}"
    most = 0 if page == README else 1
    assert len(dated) <= most, (
        "dated lines outside a figures table (a table with a date column): keep current figures in such"
        " a table and history in commit messages:\n" + "\n".join(dated)
    )


def test_readme_has_one_figures_table() -> None:
    dated = [t for t in _tables(README) if "date" in t[0].lower()]
    assert len(dated) == 1, f"README.md: one current performance table with a date column, not {len(dated)}"
    header = dated[0][0].lower()
    assert all(word in header for word in ("command", "commit", "machine"))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", CHECKED_PAGES, ids=lambda p: p.name)
def test_links_reach_their_page_and_heading(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.is_file(), f"{page.name}: link to a missing file: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: no heading for the link {target}"


def test_readme_commands_were_found() -> None:
    paths = {split_command(c.argv)[0] for c in kame_commands((README,))}
    # The README's core: the first run, the first conversation, the doctor, the profiles.
    assert {("talk",), ("plot",), ("replay",), ("doctor",), ("profiles", "check")} <= paths


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.id)
def test_command_matches_its_help(command: Command) -> None:
    path, rest = split_command(command.argv)
    assert path, f"{command.id}: no such kame command"
    if path in RUN_IN_PROCESS or "--help" in rest:
        # Cheap and local: run as written.
        with contextlib.redirect_stdout(io.StringIO()):
            assert run(list(command.argv)) == 0, f"{command.id} exited non-zero"
        return
    help_ = help_text(path)
    known = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", help_))
    for word in rest:
        flag = word.split("=", 1)[0]
        if flag.startswith("-"):
            assert flag in known, f"{command.id}: `{flag}` is not an option of `kame {' '.join(path)}`"
    _check_profile_names(command, rest)


def all_options(path: tuple[str, ...] = ()) -> set[str]:
    """Every long option of `kame PATH` and of the commands under it."""
    options = set(re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", help_text(path)))
    for name in subcommands(path):
        options |= all_options((*path, name))
    return options


def test_inline_options_exist() -> None:
    """An option the README names in its prose or tables (`--headphones`) is one that kame has."""
    text = re.sub(r"```.*?```", "", README.read_text(), flags=re.S)
    named = {
        m for span in re.findall(r"`([^`]+)`", text) for m in re.findall(r"(?<![\w-])--[a-z][\w-]*", span)
    }
    assert named, "the README names options"
    unknown = sorted(named - all_options())
    assert not unknown, f"options the README names that no kame command has: {unknown}"


def test_profile_keys_named_in_the_docs_exist() -> None:
    """A key the docs name as `[section] key` is one that `kame profiles show` prints."""
    profiles = []
    for name in ("offline", "ollama"):  # between them, every table: [llm.server], [llm] api_base
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert run(["profiles", "show", name]) == 0
        profiles.append(tomllib.loads(out.getvalue()))

    def has(profile: dict[str, Any], section: str, key: str) -> bool:
        for part in section.split("."):
            profile = profile.get(part, {})
        return key in profile

    for page in CHECKED_PAGES:
        for section, key in re.findall(r"`\[([\w.]+)\] (\w+)", page.read_text()):
            assert any(has(p, section, key) for p in profiles), (
                f"{page.name}: no profile key [{section}] {key}"
            )


def _check_profile_names(command: Command, rest: tuple[str, ...]) -> None:
    """A profile named in the docs is a shipped one (a path is the reader's own file)."""
    for flag, value in itertools.pairwise(rest):
        if flag in ("--profile", "-p") and "/" not in value and not value.endswith(".toml"):
            assert (ROOT / "profiles" / f"{value}.toml").is_file(), (
                f"{command.id}: no shipped profile {value}"
            )


def test_readme_profile_examples_load(tmp_path: Path) -> None:
    examples = [b for b in fenced_blocks(README) if b.lang == "toml"]
    assert examples, "the README shows a profile"
    for number, block in enumerate(examples):
        profile = tmp_path / f"example{number}.toml"
        profile.write_text("\n".join(block.lines) + "\n")
        with contextlib.redirect_stdout(io.StringIO()):
            assert run(["profiles", "show", str(profile)]) == 0, f"README.md:{block.line}: profile refused"


def test_the_offline_first_run_works_as_written(tmp_path: Path) -> None:
    """The README's first run, line by line, in a fresh folder: the question spoken by espeak-ng,
    the offline tandem answering it (`--fast`), and `kame plot` on its log."""
    env = {**os.environ, "KAME_CONFIG_DIR": str(tmp_path / "config")}
    talked = False
    for line in first_run_block().lines:
        words = shell_words(line)
        if not words:
            continue
        if words[0] != "kame":
            subprocess.run(line, shell=True, cwd=tmp_path, check=True, capture_output=True, timeout=60)
            continue
        argv = words[1:]
        if argv[0] == "talk" and "--fast" not in argv:
            argv.append("--fast")  # the file as fast as the loop steps: the suite does not wait for real time
        done = subprocess.run(
            [sys.executable, "-m", "kame_cli.cli", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (
            f"`kame {' '.join(argv)}` exited {done.returncode}: {done.stderr[-2000:]}"
        )
        talked = talked or argv[0] == "talk"
    assert talked
    answer = tmp_path / "answer.wav"
    assert answer.stat().st_size > 44, "the answer holds audio"
    log = tmp_path / "session-log" / "events.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    finals = [e["text"] for e in events if e.get("type") == "FinalTranscript"]
    assert any("capital" in text.lower() for text in finals), f"the question was heard: {finals}"
    assert any(e.get("type") == "OracleRequestStarted" for e in events), "the LLM was asked"
    assert (tmp_path / "session-log" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
