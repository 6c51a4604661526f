"""The one place that opens the files kame writes: a session's, and the ones a command is told to write.

A session's: a fresh or empty log folder, fresh 0600 files in it.

`--log-dir DIR` must name a folder that does not exist yet (it is created, mode 0700) or an empty
one: kame never overwrites or appends to an earlier session's log, and refuses a folder that holds
anything, before any model loads. Files are created with O_EXCL | O_NOFOLLOW relative to the
folder's own descriptor, so a symbolic link or a file planted in the folder is refused, never
followed or truncated.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from kame_cli.errors import ConfigError, RuntimeFailure

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


def open_session_wav(directory: Path, name: str) -> int:
    """`open_session_file` for a WAV the front-end fills: a valid empty mono WAV from the start, so
    a session stopped before the front-end wrote its header still leaves a readable log."""
    from kame_cli.audio_io.wav import wav_header

    fd = open_session_file(directory, name)
    try:
        os.write(fd, wav_header(1, 0))
    except OSError as err:
        os.close(fd)
        raise RuntimeFailure(f"--log-dir {directory}: {name} could not be written ({err.strerror})") from None
    return fd


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)
"""Write errors of a disk that filled or failed (exit 1); any other error is the path's (exit 2)."""


def check_user_target(path: Path, what: str) -> None:
    """ConfigError unless `path` is absent or a regular file: a link, a folder or a device there is
    not kame's to replace (checked before a command does its work, and again when it writes)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise ConfigError(f"{what}: cannot be checked ({err.strerror}): choose another file") from None
    if mode is not None and stat.S_ISLNK(mode):
        raise ConfigError(
            f"{what}: a symbolic link: kame never writes through links; remove it or name another file"
        )
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"{what}: a folder: name a file")
    if mode is not None and not stat.S_ISREG(mode):
        raise ConfigError(f"{what}: not a regular file: name a new or ordinary file")


def write_user_file(path: Path, data: bytes, what: str) -> None:
    """Write `data` to `path` (a file the user named, or a default inside a log folder), whole or
    not at all: a new file beside it, renamed over `path` once complete. A symbolic link, a folder
    or a special file at `path` is refused (ConfigError), never followed or replaced; a disk that
    fills is a RuntimeFailure. `what` names the path in messages ("--output x.png")."""
    check_user_target(path, what)
    folder = path.parent
    try:
        fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as err:
        raise ConfigError(
            f"{what}: cannot be created in {folder} ({err.strerror}): choose a writable folder"
        ) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, 0o644 & ~_umask())
        finally:
            os.close(fd)
        os.replace(scratch, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        if err.errno in _DISK_ERRORS:
            raise RuntimeFailure(
                f"{what}: could not be written ({err.strerror}): free disk space; nothing was left behind"
            ) from None
        raise ConfigError(f"{what}: cannot be written ({err.strerror}): choose another file") from None
    except BaseException:  # Ctrl-C: no half-written scratch file stays behind
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise


def _umask() -> int:
    # Read by setting it: the only portable way (commands that write a user file run no threads).
    current = os.umask(0)
    os.umask(current)
    return current
