"""`kame serve`'s command line: thin; the work is in `serve.server`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kame_cli.cli_options import DeviceOption, ModelOption, ProfileOption, QuantizeOption


def register(app: typer.Typer) -> None:
    app.command()(serve)


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback by default; others need a token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port, printed at start).")] = 8998,
    profile: ProfileOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    quantize: QuantizeOption = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir", help="Keep each session's log (events, input and output WAV) in DIR/session-*."
        ),
    ] = None,
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Clients that may wait for the front-end; past it: HTTP 503.")
    ] = 4,
    max_sessions: Annotated[
        int,
        typer.Option(
            "--max-sessions",
            help="Sessions at once, batched on the one front-end (kame doctor suggests one for the card).",
        ),
    ] = 1,
    token_env: Annotated[
        str, typer.Option("--token-env", help="Environment variable holding the access token.")
    ] = "KAME_SERVER_TOKEN",
    insecure_no_token: Annotated[
        bool, typer.Option("--insecure-no-token", help="Serve a non-loopback address without a token.")
    ] = False,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option("--allow-origin", help="A web page origin allowed besides the server's own (repeat)."),
    ] = None,
    handshake_timeout: Annotated[
        float,
        typer.Option("--handshake-timeout", min=0.1, help="Seconds a connection has to send its request."),
    ] = 10.0,
    idle_timeout: Annotated[
        float,
        typer.Option("--idle-timeout", min=0.1, help="Seconds without a client message before it is closed."),
    ] = 30.0,
    per_address: Annotated[
        int,
        typer.Option("--connections-per-address", min=1, help="Open connections allowed per client address."),
    ] = 8,
    ssl_cert: Annotated[Path | None, typer.Option("--ssl-cert", help="TLS certificate (PEM).")] = None,
    ssl_key: Annotated[Path | None, typer.Option("--ssl-key", help="TLS private key (PEM).")] = None,
    ssl_self_signed: Annotated[
        bool,
        typer.Option(
            "--ssl-self-signed",
            help="TLS with a certificate made at start (its path and fingerprint are printed).",
        ),
    ] = False,
) -> None:
    """Serve the tandem over moshi's WebSocket protocol (/api/chat), with /healthz and /metrics."""
    from kame_cli.engine.config import quantize_flag
    from kame_cli.serve.options import ServeOptions
    from kame_cli.serve.server import run_server

    options = ServeOptions(
        host=host,
        port=port,
        profile=profile,
        model=model,
        device=device,
        quantize=quantize_flag(quantize),
        log_dir=log_dir,
        max_queue=max_queue,
        max_sessions=max_sessions,
        token_env=token_env,
        insecure_no_token=insecure_no_token,
        allow_origin=tuple(allow_origin or ()),
        handshake_timeout_s=handshake_timeout,
        idle_timeout_s=idle_timeout,
        connections_per_address=per_address,
        ssl_cert=ssl_cert,
        ssl_key=ssl_key,
        ssl_self_signed=ssl_self_signed,
    )
    raise typer.Exit(run_server(options))
