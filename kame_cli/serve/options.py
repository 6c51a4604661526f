"""`kame serve`'s options: checked in one place, before anything binds or loads."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kame_cli.errors import ConfigError


@dataclass(frozen=True)
class ServeOptions:
    """`kame serve`'s options, checked by `check`."""

    host: str = "127.0.0.1"
    port: int = 8998
    profile: str | None = None
    model: str | None = None
    device: str | None = None
    quantize: str | None = None
    log_dir: Path | None = None
    max_queue: int = 4
    max_sessions: int = 1
    """Sessions stepped together on the one front-end (1: one at a time, as `kame talk` runs)."""
    token_env: str = "KAME_SERVER_TOKEN"
    insecure_no_token: bool = False
    allow_origin: tuple[str, ...] = ()
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 30.0
    connections_per_address: int = 8
    handshake_timeout_s: float = 10.0
    """A connection that has not sent a whole request by then is closed."""
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    ssl_self_signed: bool = False
    send_queue: int = 256
    """Messages held for a client before it counts as not reading (~5 s of audio, text and metadata)."""
    jitter_frames: int = 4
    """Client frames held for the pacer (320 ms): bursts are smoothed, a drifting clock bounded."""
    token: str | None = field(default=None, repr=False)
    """Read from the `token_env` variable by `check`; never printed."""

    def check(self) -> ServeOptions:
        if self.max_queue < 0:
            raise ConfigError("--max-queue must be >= 0")
        if self.max_sessions < 1:
            raise ConfigError("--max-sessions must be >= 1 (sessions stepped together on the front-end)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: expected 0 to 65535")
        token = os.environ.get(self.token_env) or None
        if not is_loopback(self.host) and token is None and not self.insecure_no_token:
            raise ConfigError(
                f"--host {self.host} is reachable from other machines: set an access token in the "
                f"environment variable {self.token_env} (or name another with --token-env), or pass "
                "--insecure-no-token"
            )
        if (self.ssl_cert is None) != (self.ssl_key is None):
            raise ConfigError("--ssl-cert and --ssl-key go together: give both (PEM files)")
        if self.ssl_self_signed and self.ssl_cert is not None:
            raise ConfigError("--ssl-self-signed makes a certificate: drop it or drop --ssl-cert/--ssl-key")
        return replace(self, token=token)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def frontend_config(profile: Any, options: ServeOptions) -> Any:
    """The profile's `[frontend]` with the command line's overrides."""
    overrides: dict[str, Any] = {}
    if options.model is not None:
        overrides["model"] = options.model
    if options.device is not None:
        overrides["device"] = options.device
    if options.quantize is not None:
        overrides["quantize"] = options.quantize
    return replace(profile.frontend, **overrides)
