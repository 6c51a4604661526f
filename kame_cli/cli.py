"""The `kame` command: thin Typer layer. Errors become one line on stderr and an exit code here alone.

Exit codes: 0 ok, 1 runtime failure (a part died), 2 bad input (a usage error, or a `KameError` of
bad input: a bad file, key, device, flag). A usage error from Click/Typer (an unknown flag,
`--seed abc`, a value out of range) becomes `kame: error: <what> (see kame <command> --help)`
instead of Click's multi-line box.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer

from kame_cli.errors import KameError, printable

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
    from kame_cli.eval import register as register_eval
    from kame_cli.knowledge.cli import register as register_knowledge
    from kame_cli.profiles.cli import register as register_profiles
    from kame_cli.serve.cli import register as register_serve

    register_session_commands(app)
    register_doctor(app)
    register_profiles(app)
    register_bench(app)
    register_eval(app)
    register_serve(app)
    register_knowledge(app)


_command: Any = None


def _click_command() -> Any:
    # Built once per process: Typer re-reads every command's signature to build it (~50 ms).
    global _command
    if _command is None:
        _register_commands()
        _command = typer.main.get_command(app)
    return _command


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` and return its exit code (0 ok, 1 failure, 2 bad input)."""
    click_errors = _click_exceptions()
    aborts = tuple(a for a in (typer.Abort, getattr(click_errors, "Abort", None)) if a is not None)
    command = _click_command()
    stdout_was = _stdout_identity()
    try:
        # Not standalone: Click's usage errors come here instead of printing their own box.
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name="kame", standalone_mode=False
        )
    except SystemExit as exit_:
        code = exit_.code
        if code == 1 and _stdout_broke(stdout_was):
            return _broken_pipe()
        return code if isinstance(code, int) else (0 if code is None else 1)
    except click_errors.NoArgsIsHelpError as err:
        err.show()  # `kame` or `kame bench` alone: the help text, as Click would print it
        return 2
    except click_errors.ClickException as err:
        print(usage_error_line(err, argv, command), file=sys.stderr)
        return 2
    except aborts:
        print("kame: interrupted", file=sys.stderr)
        return 130
    except KameError as err:
        print(f"kame: error: {printable(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("kame: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


BROKEN_PIPE = "kame: error: standard output was closed before all was written (a pipe whose reader ended)"


def _stdout_identity() -> tuple[int, int] | None:
    try:
        info = os.fstat(1)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _stdout_broke(was: tuple[int, int] | None) -> bool:
    # Typer and rich turn a write to a closed pipe into a bare exit 1; their only traces: Typer
    # wraps sys.stdout, rich points file descriptor 1 at /dev/null.
    return type(sys.stdout).__name__ == "PacifyFlushWrapper" or _stdout_identity() != was


def _broken_pipe() -> int:
    with contextlib.suppress(OSError):
        print(BROKEN_PIPE, file=sys.stderr, flush=True)
    return 1


def _click_exceptions() -> Any:
    """Click's exception module as Typer uses it (Typer 0.29 vendors Click as `typer._click`)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older Typer runs on the Click package itself
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def usage_error_line(err: Exception, argv: Sequence[str] | None = None, root: Any = None) -> str:
    """A Click usage error as one line: what is wrong, and the help to read."""
    format_message = getattr(err, "format_message", None)
    text = format_message() if callable(format_message) else str(err)
    message = " ".join(printable(str(text)).split())
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or "kame"
    if path == "kame" and root is not None:
        # Some errors (a flag missing its value) come without the subcommand's context.
        path = _command_path(root, list(argv) if argv is not None else sys.argv[1:])
    return f"kame: error: {message} (see {path} --help)"


def _command_path(root: Any, argv: list[str]) -> str:
    """`kame talk` for `talk --profile`: the commands named at the start of `argv`."""
    names, command = ["kame"], root
    for arg in argv:
        commands = getattr(command, "commands", None)
        if not isinstance(commands, dict) or arg not in commands:
            break
        names.append(arg)
        command = commands[arg]
    return " ".join(names)


def main() -> None:
    code = run()
    # Every part has been stopped and every file flushed and closed by now. Tearing down torch,
    # CTranslate2 and LiteLLM at interpreter exit takes over a second, which would break Ctrl-C's
    # promise to be gone within one, so leave at once.
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the last of the output was still buffered
        code = _broken_pipe() if code == 0 else code
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
