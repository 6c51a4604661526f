"""Domain errors: each carries a one-line message that says what is wrong and how to fix it.

The library raises these; the CLI turns any of them into that one line on stderr and exit code 2.
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


class KameError(Exception):
    """Base of every error meant for the user: `str(err)` is a single line with the fix."""


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


class SessionError(KameError):
    """A part a session cannot run without (audio input, front-end) broke while it ran."""
