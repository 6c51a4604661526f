"""Tiny front-end checkpoints on disk, in the file layout of the Moshi/KAME Hugging Face repos.

`write_tiny_checkpoint(dir)` gives a directory that `load_frontend(FrontendConfig(model=str(dir)))`
loads through the production loader; `install_in_hub_cache` puts one where huggingface_hub's cache
would hold a downloaded repo; `silent_hub` is a hub that accepts connections and never answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from kame_cli.engine.checkpoint import DEFAULT_LM_NAME as LM_NAME
from kame_cli.engine.checkpoint import DEFAULT_MIMI_NAME as MIMI_NAME
from kame_cli.engine.checkpoint import DEFAULT_TOKENIZER_NAME as TOKENIZER_NAME
from tests.support.python import run_python

MIMI_CONFIG_NAME = "mimi_config.json"


def write_tiny_checkpoint(
    directory: Path,
    *,
    kame_format: bool = True,
    seed: int = 0,
    lm_dtype: torch.dtype = torch.bfloat16,
    lm_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write config.json, LM and Mimi safetensors and a sentencepiece tokenizer into `directory`.

    `kame_format`: the LM holds its own `oracle_emb` (KAME); otherwise it is a plain Moshi LM.
    """
    import sentencepiece
    from moshi.models.lm import LMModel
    from moshi.models.loaders import get_mimi

    from kame_cli.engine import builtin
    from kame_cli.engine.model import OracleLMModel

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_bytes = builtin.train_tiny_tokenizer()
    (directory / TOKENIZER_NAME).write_bytes(tokenizer_bytes)
    text_card = sentencepiece.SentencePieceProcessor(model_proto=tokenizer_bytes).vocab_size()
    lm_config = builtin.tiny_lm_config(text_card) | (lm_overrides or {})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lm_class = OracleLMModel if kame_format else LMModel
        lm = lm_class(device="cpu", dtype=torch.float32, **lm_config)
        mimi = get_mimi(None, builtin.TINY_MIMI_CONFIG, device="cpu", num_codebooks=lm.dep_q)
        builtin.randomize_codebooks(mimi, torch.Generator().manual_seed(seed))

    lm_state = {key: value.to(lm_dtype).contiguous() for key, value in lm.state_dict().items()}
    save_file(lm_state, directory / LM_NAME)
    save_file({key: value.contiguous() for key, value in mimi.state_dict().items()}, directory / MIMI_NAME)
    (directory / MIMI_CONFIG_NAME).write_text(json.dumps(builtin.TINY_MIMI_CONFIG, indent=2))
    config = {
        **lm_config,
        "moshi_name": LM_NAME,
        "mimi_name": MIMI_NAME,
        "tokenizer_name": TOKENIZER_NAME,
        "mimi_config_name": MIMI_CONFIG_NAME,
        "model_type": "moshi",
        "lm_gen_config": {"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25},
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def install_in_hub_cache(checkpoint: Path, cache_dir: Path, repo_id: str) -> None:
    """Lay `checkpoint`'s files out as huggingface_hub caches a downloaded repo (refs/main -> snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for path in checkpoint.iterdir():
        shutil.copy2(path, snapshot / path.name)


@contextmanager
def silent_hub() -> Iterator[str]:
    """A loopback endpoint whose kernel accepts connections that nobody answers: an unresponsive hub."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


_LOAD_ONLINE = """
from kame_cli.errors import KameError
{imports}
try:
    {call}
except KameError as err:
    print(type(err).__name__, err)
"""


def error_from_a_silent_hub(imports: str, call: str, home: Path) -> str:
    """Run `call` (after `imports`) in a fresh interpreter with the hub online at a `silent_hub` and an
    empty HF_HOME (`home`), with a 2 s probe timeout; returns the one-line KameError it raised, which
    names the hub's URL. A subprocess: huggingface_hub reads its offline flag and endpoint at import.
    """
    with silent_hub() as endpoint:
        env = os.environ | {
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_ETAG_TIMEOUT": "2",
        }
        env.pop("HF_TOKEN", None)
        started = time.monotonic()
        result = run_python(_LOAD_ONLINE.format(imports=imports, call=call), env=env)
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line and "unreachable" in line and endpoint in line, line
    # Imports plus one 2 s probe; the library's own first request would wait for minutes.
    assert elapsed < 40
    return line
