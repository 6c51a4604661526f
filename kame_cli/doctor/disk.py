"""Free disk where the Hugging Face cache keeps models, against what a first session downloads."""

from __future__ import annotations

import shutil
from pathlib import Path

from kame_cli.doctor.report import Check, Details, gib

_HEADROOM = 2 * 2**30
"""Left free after the downloads: a full disk breaks the session log and the output WAV too."""


def check_disk(download_bytes: int) -> Check:
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the cache folder is made by the first download
    free = shutil.disk_usage(probe).free
    details: Details = {"path": str(cache), "free_bytes": free, "download_bytes": download_bytes}
    summary = f"{gib(free)} free for the model cache at {cache}"
    if download_bytes:
        summary += f"; {gib(download_bytes)} to download"
    if free < download_bytes:
        return Check("disk", "fail", summary, "free disk space, or point HF_HOME at a larger disk", details)
    if free < download_bytes + _HEADROOM:
        return Check("disk", "warn", summary, "less than 2 GiB would be left: free some space", details)
    return Check("disk", "ok", summary, None, details)
