"""Finding and checking front-end checkpoint files: Hugging Face repos, local directories, overrides.

Every problem becomes a `CheckpointError` or `ModelNotAvailableError` whose one-line message names
the file (or repo) and what is wrong with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kame_cli.engine.config import FrontendConfig
from kame_cli.errors import CheckpointError, ModelNotAvailableError
from kame_cli.hub import hub_offline, is_repo_id, list_repo_files, offline_miss, transport_errors

CONFIG_NAME = "config.json"
# moshi's names for repos whose config.json does not name the files (and legacy repos without one).
DEFAULT_LM_NAME = "model.safetensors"
DEFAULT_MIMI_NAME = "tokenizer-e351c8d8-checkpoint125.safetensors"
DEFAULT_TOKENIZER_NAME = "tokenizer_spm_32k_3.model"

_LOCAL_FIX = "pass a local checkpoint directory as the model"


@dataclass(frozen=True)
class CheckpointFiles:
    """Local paths of everything a front-end checkpoint is made of."""

    source: str
    """Where it came from, for messages: a repo id or a directory."""
    lm_weights: Path
    mimi_weights: Path
    tokenizer: Path
    config: Path | None
    """None: a legacy Moshi repo without config.json (the 7B layout is assumed)."""
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)
    mimi_config: Path | None = None
    lora_weights: Path | None = None


def read_config(path: Path) -> dict[str, Any]:
    """Parse a Moshi/KAME `config.json`; a bad file is a `CheckpointError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found: pass an existing config.json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read config ({err}): check the file") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object of LM settings, got {type(value).__name__}")
    model_type = value.get("model_type", "moshi")
    if model_type != "moshi":
        raise CheckpointError(
            f"{path}: model_type '{model_type}' is not a dialogue model: use a Moshi/KAME one"
        )
    if value.get("conditioners") or value.get("fuser"):
        raise CheckpointError(f"{path}: conditioned LMs are not supported: use a Moshi/KAME dialogue model")
    return value


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found: check the path or the checkpoint directory")
    return path


def _override(value: str | None, what: str) -> Path | None:
    return None if value is None else _existing(Path(value).expanduser(), what)


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def resolve_checkpoint(cfg: FrontendConfig, *, cache_dir: Path | None = None) -> CheckpointFiles:
    """Local paths for `cfg.model` (a directory or a repo id) with `cfg`'s explicit overrides applied."""
    if looks_like_path(cfg.model):
        directory = Path(cfg.model).expanduser()
        if not directory.is_dir():
            raise CheckpointError(
                f"{directory}: not a checkpoint directory (expected config.json and weights)"
            )
        fetch: _LocalDirectory | _HubRepo = _LocalDirectory(directory)
    elif is_repo_id(cfg.model):
        fetch = _HubRepo(cfg.model, cfg.revision, cache_dir)
    else:
        raise ModelNotAvailableError(
            f"unknown model '{cfg.model}': use a Hugging Face repo id (e.g. SakanaAI/kame), "
            "a checkpoint directory, random:tiny or random:7b"
        )

    config_path = _override(cfg.config, "config") or fetch.get(CONFIG_NAME, optional=True)
    raw = read_config(config_path) if config_path is not None else {}
    lm = _override(cfg.lm_weights, "LM weights") or fetch.get(raw.get("moshi_name", DEFAULT_LM_NAME))
    mimi = _override(cfg.mimi_weights, "Mimi weights") or fetch.get(raw.get("mimi_name", DEFAULT_MIMI_NAME))
    tokenizer = _override(cfg.tokenizer, "tokenizer") or fetch.get(
        raw.get("tokenizer_name", DEFAULT_TOKENIZER_NAME)
    )
    mimi_config = fetch.get(raw["mimi_config_name"]) if raw.get("mimi_config_name") else None
    lora = fetch.get(raw["lora_name"]) if raw.get("lora_name") else None
    assert lm is not None and mimi is not None and tokenizer is not None
    return CheckpointFiles(fetch.source, lm, mimi, tokenizer, config_path, raw, mimi_config, lora)


class _LocalDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.source = str(directory)

    def get(self, name: str, *, optional: bool = False) -> Path | None:
        path = self.directory / name
        if path.is_file():
            return path
        if name == CONFIG_NAME:
            # Unlike a legacy hub repo, a directory without config.json says nothing about its model.
            raise CheckpointError(
                f"{path}: file not found: a checkpoint directory needs a Moshi/KAME config.json"
            )
        raise CheckpointError(f"{path}: file not found (named by {self.directory / CONFIG_NAME})")


class _HubRepo:
    """Files of a Hugging Face repo: from the local cache when there, else downloaded with progress."""

    def __init__(self, repo_id: str, revision: str | None, cache_dir: Path | None) -> None:
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = cache_dir
        self.source = repo_id
        self._remote_files: set[str] | None = None

    def get(self, name: str, *, optional: bool = False) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo_id, name, cache_dir=self.cache_dir, revision=self.revision)
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None:  # the cache remembers that the repo has no such file
            return self._absent(name, optional)
        if hub_offline():
            # Even an optional config.json: offline we cannot tell a legacy repo from an uncached one.
            raise offline_miss(f"{self.repo_id}: '{name}'", _LOCAL_FIX)
        if name not in self._list_remote():
            return self._absent(name, optional)
        return self._download(name)

    def _absent(self, name: str, optional: bool) -> Path | None:
        if optional:
            return None
        raise CheckpointError(f"{self.repo_id}: the repo has no file '{name}' (named by its config.json)")

    def _list_remote(self) -> set[str]:
        # One bounded request instead of hf_hub_download's, which can hang on an unanswering hub.
        if self._remote_files is None:
            self._remote_files = list_repo_files(
                self.repo_id, self.revision, subject=self.repo_id, fallback=_LOCAL_FIX
            )
        return self._remote_files

    def _download(self, name: str) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.repo_id, name, revision=self.revision, cache_dir=self.cache_dir))
        except transport_errors() as err:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ModelNotAvailableError(
                f"{self.repo_id}: downloading '{name}' failed ({first_line[:160]}): retry when online"
            ) from None
