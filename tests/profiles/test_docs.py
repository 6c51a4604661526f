"""docs/profiles.md is the generator's output: a key added or redocumented in a config type, and
not regenerated, fails here."""

from __future__ import annotations

from pathlib import Path

from kame_cli.profiles.docs import render
from kame_cli.profiles.keys import keys_of
from kame_cli.profiles.profile import section_types

PAGE = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def test_the_profiles_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/profiles.md is stale: run `python -m kame_cli.profiles.docs > docs/profiles.md`"
    )


def test_every_key_of_every_table_is_on_the_page_with_its_documentation() -> None:
    page = render()
    for section, cls in section_types().items():
        assert f"## `[{section}]`" in page
        for key in keys_of(cls):
            assert key.doc, f"[{section}] {key.name} has no docstring: say what it does"
            assert f"- `{key.name}` (" in page
            assert " ".join(key.doc.split()) in page


def test_help_loads_no_config_type() -> None:
    # `kame --help` registers `kame profiles`; the config types (and pydantic) load on first use.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from kame_cli.cli import run\n"
        "assert run(['--help']) == 0\n"
        "loaded = [m for m in ('kame_cli.profiles.profile', 'kame_cli.settings') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
