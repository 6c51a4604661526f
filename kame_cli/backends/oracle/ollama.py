"""Ollama comforts LiteLLM lacks: is the server up, is the model there, pull it with a progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kame_cli.backends.oracle.errors import LlmServerError
from kame_cli.errors import ModelNotAvailableError

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


def canonical_model(name: str) -> str:
    """Ollama's full model name: `llama3.2` is `llama3.2:latest`."""
    return name if ":" in name else f"{name}:latest"


def _client(host: str | None, timeout_s: float) -> Any:  # an ollama.Client, imported lazily
    import ollama

    return ollama.Client(host=host or DEFAULT_OLLAMA_HOST, timeout=timeout_s)


def installed_models(host: str | None, timeout_s: float = 3.0) -> list[str]:
    """Names of the models the Ollama server at `host` has; LlmServerError if it does not answer."""
    import httpx
    import ollama

    where = host or DEFAULT_OLLAMA_HOST
    try:
        with _client(host, timeout_s) as client:
            listing = client.list()
    except (ConnectionError, httpx.HTTPError) as err:
        raise LlmServerError(
            f"no Ollama server answers at {where} ({type(err).__name__}): start it with `ollama serve` "
            "or fix [llm] api_base"
        ) from None
    except ollama.ResponseError as err:
        raise LlmServerError(f"Ollama at {where} answered {err.status_code}: {err.error}") from None
    return [model.model for model in listing.models if model.model]


def check_ollama_model(
    host: str | None, model: str, *, profile_name: str = "NAME", timeout_s: float = 3.0
) -> str:
    """Check that the server answers and has `model`; returns a one-line summary."""
    models = installed_models(host, timeout_s)
    wanted = canonical_model(model)
    if wanted not in {canonical_model(m) for m in models}:
        raise ModelNotAvailableError(
            f"Ollama at {host or DEFAULT_OLLAMA_HOST} has no model {wanted}: "
            f"run `kame profiles check {profile_name} --pull` (or `ollama pull {model}`)"
        )
    return f"Ollama at {host or DEFAULT_OLLAMA_HOST} answers and has {wanted}"


def pull_ollama_model(
    host: str | None, model: str, *, console: Console | None = None, timeout_s: float = 30.0
) -> None:
    """Pull `model` into the Ollama server at `host`, showing Rich progress bars per layer."""
    import httpx
    import ollama
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TransferSpeedColumn,
    )

    where = host or DEFAULT_OLLAMA_HOST
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    try:
        with _client(host, timeout_s) as client, Progress(*columns, console=console) as progress:
            tasks: dict[str, TaskID] = {}
            status_task = progress.add_task(f"pulling {model}", total=None)
            for update in client.pull(model, stream=True):
                if update.digest and update.total:
                    if update.digest not in tasks:
                        label = f"  {update.digest.removeprefix('sha256:')[:12]}"
                        tasks[update.digest] = progress.add_task(label, total=update.total)
                    progress.update(tasks[update.digest], completed=update.completed or 0)
                elif update.status:
                    progress.update(status_task, description=f"{model}: {update.status}")
    except (ConnectionError, httpx.HTTPError) as err:
        raise LlmServerError(
            f"no Ollama server answers at {where} ({type(err).__name__}): start it with `ollama serve`"
        ) from None
    except ollama.ResponseError as err:
        raise ModelNotAvailableError(f"Ollama at {where} could not pull {model}: {err.error}") from None
