"""The one place that opens a session's files: a fresh or empty log folder, fresh 0600 files in it.

`--log-dir DIR` must name a folder that does not exist yet (it is created, mode 0700) or an empty
one: kame never overwrites or appends to an earlier session's log, and refuses a folder that holds
anything, before any model loads. Files are created with O_EXCL | O_NOFOLLOW relative to the
folder's own descriptor, so a symbolic link or a file planted in the folder is refused, never
followed or truncated.
"""

from __future__ import annotations

import os
from pathlib import Path

from kame_cli.errors import ConfigError

EVENTS_FILE = "events.jsonl"
INPUT_WAV = "input.wav"
OUTPUT_WAV = "output.wav"
SESSION_FILES = (EVENTS_FILE, INPUT_WAV, OUTPUT_WAV)


def prepare_log_dir(path: Path) -> Path:
    """Create `path` (0700) or check that it is an empty, writable folder; one line of error if not."""
    if str(path).strip() == "":
        raise ConfigError("--log-dir is empty: name a new folder for the session log")
    try:
        if path.is_symlink() and not path.is_dir():
            raise ConfigError(f"--log-dir {path}: a broken symbolic link: name a new folder")
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"--log-dir {path}: not a folder: name a new folder for the session log")
            held = sorted(os.listdir(path))
            if held:
                shown = ", ".join(held[:3]) + (" ..." if len(held) > 3 else "")
                raise ConfigError(
                    f"--log-dir {path}: not empty (holds {shown}): name a new or empty folder "
                    "(kame never overwrites an earlier session's log)"
                )
        else:
            path.mkdir(parents=True, mode=0o700)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as err:
        raise ConfigError(
            f"--log-dir {path}: cannot create it ({err.strerror}); choose a writable folder"
        ) from err
    return path


def open_session_file(directory: Path, name: str) -> int:
    """Create `directory/name` as a new 0600 file and return its descriptor (never follows a link,
    never opens an existing file)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError(f"--log-dir {directory}: cannot open it ({err.strerror})") from err
    try:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
    except FileExistsError as err:
        raise ConfigError(
            f"--log-dir {directory}: {name} appeared in it (a file or link): name a new folder"
        ) from err
    except OSError as err:
        raise ConfigError(f"--log-dir {directory}: cannot create {name} ({err.strerror})") from err
    finally:
        os.close(dir_fd)
    os.fchmod(fd, 0o600)  # the umask may only narrow it; make it exact
    return fd
