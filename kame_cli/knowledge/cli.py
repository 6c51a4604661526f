"""`kame knowledge index PROFILE`: build or refresh a profile's documents index, with a progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from kame_cli.knowledge.config import KnowledgeConfig
    from kame_cli.knowledge.index import RefreshReport


def register(app: typer.Typer) -> None:
    knowledge_app = typer.Typer(
        help="The user's documents behind the oracle ([knowledge] in a profile; docs/knowledge.md).",
        no_args_is_help=True,
    )

    @knowledge_app.command("index")
    def index_command(
        profile: Annotated[str, typer.Argument(help="Profile name or path to a .toml file.")],
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object on stdout (lines: stderr).")
        ] = False,
    ) -> None:
        """Build or refresh the profile's documents index (only changed documents are read again)."""
        import json

        from kame_cli.errors import ConfigError
        from kame_cli.knowledge.session import check_documents
        from kame_cli.profiles import load_profile

        loaded = load_profile(profile)
        config = loaded.knowledge
        if not config.documents:
            raise ConfigError(
                f"{loaded.shown_path}: [knowledge] documents: none named: add files or globs of "
                "your documents"
            )
        check_documents(config, loaded.shown_path)
        report = _refresh_with_bar(config)
        typer.echo(
            f"{report.index}: {report.files} documents, {report.passages} passages; "
            f"{len(report.indexed)} read, {len(report.removed)} dropped in {report.seconds:.2f} s",
            err=True,
        )
        if as_json:
            typer.echo(json.dumps(report.as_dict()))

    app.add_typer(knowledge_app, name="knowledge")


def _refresh_with_bar(config: KnowledgeConfig) -> RefreshReport:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kame_cli.knowledge.index import refresh

    console = Console(stderr=True)
    if not console.is_terminal:  # a log or a pipe gets the summary line alone
        return refresh(config)
    with Progress(
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name)

        return refresh(config, progress=progress)
