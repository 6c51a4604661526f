"""The Hugging Face hub as both model loaders see it: offline mode, and one short probe before a download.

huggingface_hub's own calls can hang for minutes on a hub that accepts connections and never answers
(its metadata request has no timeout); asking once with a bounded timeout fails fast instead.
"""

from __future__ import annotations

import os
import re

from kame_cli.errors import ModelNotAvailableError

_TRUE = {"1", "true", "yes", "on"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(name: str) -> bool:
    """True for an `owner/name` the hub accepts as a repo id."""
    return bool(_REPO_ID.match(name))


def hub_offline() -> bool:
    """True when huggingface_hub must not touch the network: HF_HUB_OFFLINE read now or at its import."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def probe_timeout_s() -> float:
    """Seconds one metadata request may take: huggingface_hub's own HF_HUB_ETAG_TIMEOUT (10 s unless set)."""
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def transport_errors() -> tuple[type[Exception], ...]:
    """The errors a refused, unresolvable or silent hub raises: huggingface_hub < 1.0 talks through
    requests, 1.x through httpx. Catch them after HfHubHTTPError, which the hub raises for an answer."""
    errors: list[type[Exception]] = []
    try:
        import requests

        errors.append(requests.RequestException)
    except ImportError:  # huggingface_hub 1.x no longer needs it
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # huggingface_hub < 1.0 does not need it
        pass
    return tuple(errors)


def offline_miss(subject: str, fallback: str) -> ModelNotAvailableError:
    """The error for a model that is not cached while the hub is off limits; `fallback` is the local fix."""
    return ModelNotAvailableError(
        f"{subject} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
        f"unset HF_HUB_OFFLINE to download it once, or {fallback}"
    )


def list_repo_files(repo_id: str, revision: str | None, *, subject: str, fallback: str) -> set[str]:
    """Names of the files in hub repo `repo_id`, from one bounded request.

    Raises ModelNotAvailableError (one line, starting with `subject`, ending with `fallback` where a
    local copy is the way out) when the repo cannot be asked or does not exist.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    timeout = probe_timeout_s()
    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=timeout)
    except GatedRepoError:
        raise ModelNotAvailableError(
            f"{subject}: {repo_id} is a gated repo: accept its terms on the hub, then `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotAvailableError(
            f"{subject}: no Hugging Face repo {repo_id} (or it is private): check the model name"
        ) from None
    except RevisionNotFoundError:
        raise ModelNotAvailableError(f"{subject}: {repo_id} has no revision '{revision}'") from None
    except OfflineModeIsEnabled:
        raise offline_miss(subject, fallback) from None
    except HfHubHTTPError as err:  # any other answer than the repo's metadata (5xx, 429, a proxy page)
        status = err.response.status_code if err.response is not None else "no status"
        raise ModelNotAvailableError(
            f"{subject}: the Hugging Face hub at {constants.ENDPOINT} answered HTTP {status}: "
            f"retry later, or {fallback}"
        ) from None
    except transport_errors() as err:  # refused, DNS, TLS, or no answer within the timeout
        raise ModelNotAvailableError(
            f"{subject}: not in the Hugging Face cache and the hub at {constants.ENDPOINT} is unreachable "
            f"({type(err).__name__} within {timeout:g} s): connect to the internet, or {fallback}"
        ) from None
    return {sibling.rfilename for sibling in info.siblings or ()}
