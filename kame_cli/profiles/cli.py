"""`kame profiles list|show|check`: see, print and check the profiles kame can run with."""

from __future__ import annotations

from typing import Annotated

import typer

_NAME = typer.Argument(help="Profile name (see `kame profiles list`) or path to a .toml file.")


def register(app: typer.Typer) -> None:
    profiles_app = typer.Typer(
        help="Profiles: one TOML file per setup (LLM, prompt, restart policy, STT, front-end).",
        no_args_is_help=True,
    )

    @profiles_app.command("list")
    def list_command() -> None:
        """List shipped and user profiles (user ones override shipped ones by name)."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from kame_cli.errors import KameError, printable
        from kame_cli.profiles import DEFAULT_PROFILE, list_profiles, load_profile, user_profiles_dir

        table = Table(box=None, header_style="bold")
        table.add_column("name", no_wrap=True)
        table.add_column("source", no_wrap=True)
        table.add_column("llm", no_wrap=True)
        table.add_column("description")
        for entry in list_profiles():
            source = entry.source + (" (overrides shipped)" if entry.overrides else "")
            try:
                profile = load_profile(str(entry.path))
                llm, description = profile.llm.litellm_model, profile.description
            except KameError as err:
                llm, description = "[red]invalid[/red]", str(err)
            marker = " *" if entry.name == DEFAULT_PROFILE else ""
            # Error texts hold "[section]": escaped, or Rich would read them as markup and drop them;
            # control characters in a file's text never reach the terminal raw.
            table.add_row(
                escape(printable(entry.name + marker)),
                source,
                escape(printable(llm)),
                escape(printable(description)),
            )
        console = Console()
        console.print(table)
        console.print(f"* default.  User profiles: {user_profiles_dir()}", style="dim")

    @profiles_app.command("show")
    def show_command(name: Annotated[str | None, _NAME] = None) -> None:
        """Print a profile with every default filled in (keys only by variable name)."""
        from kame_cli.errors import printable
        from kame_cli.profiles import load_profile
        from kame_cli.profiles.schema import to_toml

        profile = load_profile(name)
        typer.echo(printable(f"# {profile.name} ({profile.source}): {profile.path}"))
        typer.echo(to_toml(profile.to_tables()), nl=False)

    @profiles_app.command("check")
    def check_command(
        name: Annotated[str | None, _NAME] = None,
        pull: Annotated[
            bool, typer.Option(help="Pull a missing Ollama model (with a progress bar).")
        ] = False,
        online: Annotated[bool, typer.Option(help="Also check that LLM servers answer.")] = True,
    ) -> None:
        """Validate a profile and check what it needs: key variables, GGUF file, Ollama model, server."""
        from kame_cli.backends.oracle.config import OLLAMA_PROVIDERS
        from kame_cli.errors import ModelNotAvailableError, printable
        from kame_cli.profiles import check_profile, load_profile

        profile = load_profile(name)
        typer.echo(printable(f"{profile.name}: {profile.shown_path} is valid ({profile.llm.litellm_model})"))
        try:
            passed = check_profile(profile, online=online)
        except ModelNotAvailableError:
            if not (pull and profile.llm.provider in OLLAMA_PROVIDERS):
                raise
            from kame_cli.backends.oracle.ollama import pull_ollama_model

            pull_ollama_model(profile.llm.api_base, profile.llm.model)
            passed = check_profile(profile, online=online)
        for line in passed:
            typer.echo(printable(f"ok: {line}"))

    app.add_typer(profiles_app, name="profiles")
