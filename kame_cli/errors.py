"""Domain errors: each carries a one-line message that says what is wrong and how to fix it.

The library raises these; the CLI turns any of them into that one line on stderr and the error's
`exit_code`: 2 for bad input (a file, a flag, a profile key, a device, an environment variable),
1 for a runtime failure (a part the session cannot run without died, a disk filled up).
"""

from __future__ import annotations

import json


def printable(text: str) -> str:
    """`text` with control characters (newlines, ANSI escapes, ...) written as escapes: one safe line."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        else:
            escaped = json.dumps(char)[1:-1]  # \n, \t, \u001b
            out.append(escaped if escaped != char else f"\\x{ord(char):02x}")
    return "".join(out)


EXIT_OK = 0
"""A session that ran to its end, or that the user stopped (Ctrl-C, SIGTERM, SIGHUP)."""
EXIT_FAILURE = 1
"""A runtime failure: files are complete up to the failure."""
EXIT_BAD_INPUT = 2
"""Bad input: nothing was started, nothing lost."""


class KameError(Exception):
    """Base of every error meant for the user: `str(err)` is a single line with the fix."""

    exit_code: int = EXIT_BAD_INPUT


class CheckpointError(KameError):
    """A front-end checkpoint is missing, corrupt, or does not match the model it claims."""


class ProfileError(KameError):
    """A profile file is unreadable or holds a bad key or value."""


class ConfigError(KameError):
    """A setting outside profiles (flag, environment variable) is wrong."""


class DeviceError(KameError):
    """An audio or compute device cannot be used."""


class ModelNotAvailableError(KameError):
    """A model is not on disk and cannot be downloaded (offline, or unknown name)."""


class AudioFileError(KameError):
    """An input audio file cannot be read or an output file cannot be written."""


class RuntimeFailure(KameError):
    """Something broke while the session ran (exit code 1, not 2: the input was fine)."""

    exit_code = EXIT_FAILURE


class SessionError(RuntimeFailure):
    """A part a session cannot run without (audio input, front-end) broke while it ran."""


class AudioWriteError(AudioFileError, RuntimeFailure):
    """An output WAV could not be written while the session ran (disk full, device gone)."""

    exit_code = EXIT_FAILURE


class LogWriteError(RuntimeFailure):
    """The session log could not be written while the session ran (disk full)."""
