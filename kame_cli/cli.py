"""The `kame` command: thin Typer layer. Errors become one line on stderr and their exit code here alone."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from kame_cli.errors import KameError

app = typer.Typer(
    name="kame",
    help="Local voice assistant on Sakana AI's KAME tandem: a Moshi front-end fed by an STT + LLM oracle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_registered = False


def _register_commands() -> None:
    # Each part registers its own commands; the modules import nothing heavy at import time.
    global _registered
    if _registered:
        return
    _registered = True
    from kame_cli.bench.cli import register as register_bench
    from kame_cli.commands import register as register_session_commands
    from kame_cli.doctor.cli import register as register_doctor
    from kame_cli.profiles.cli import register as register_profiles

    register_session_commands(app)
    register_doctor(app)
    register_profiles(app)
    register_bench(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` and return its exit code (0 ok, 1 failure, 2 bad input)."""
    _register_commands()
    command = typer.main.get_command(app)
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name="kame")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KameError as err:
        print(f"kame: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("kame: interrupted", file=sys.stderr)
        return 130
    return 0


def main() -> None:
    code = run()
    # Every part has been stopped and every file flushed and closed by now. Tearing down torch,
    # CTranslate2 and LiteLLM at interpreter exit takes over a second, which would break Ctrl-C's
    # promise to be gone within one, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
