"""What the Hugging Face hub would send: file sizes from one bounded metadata request, never a download."""

from __future__ import annotations

from kame_cli.doctor.report import first_line


class HubUnavailable(Exception):
    """The hub cannot tell (offline mode, unreachable, no such repo); the message says which."""


def repo_file_sizes(repo_id: str, revision: str | None = None) -> dict[str, int]:
    """name -> bytes of every file in `repo_id`, or HubUnavailable."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    from kame_cli.hub import hub_offline, probe_timeout_s, transport_errors

    if hub_offline():
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    timeout = probe_timeout_s()
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    except RepositoryNotFoundError:
        raise HubUnavailable(f"no repo {repo_id} on the hub (or it is private or gated)") from None
    except OfflineModeIsEnabled:
        raise HubUnavailable("HF_HUB_OFFLINE is set") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "no status"
        raise HubUnavailable(f"the hub at {constants.ENDPOINT} answered HTTP {status}") from None
    except transport_errors() as err:  # refused, DNS, TLS, or no answer within the timeout
        raise HubUnavailable(
            f"the hub at {constants.ENDPOINT} is unreachable ({type(err).__name__} within {timeout:g} s)"
        ) from None
    except ValueError as err:  # a malformed repo id
        raise HubUnavailable(first_line(err)) from None
    return {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
