"""Child-process entry point: run xllamacpp's llama.cpp HTTP server until stdin closes.

Started by `LocalLlamaServer`; it writes the listening URL to `--ready-file` once the model is
loaded. The API key, if any, comes from the environment variable named by `--api-key-env`, so it
never appears on a command line.
"""

from __future__ import annotations

import argparse
import os
import sys

from kame_cli.priority import deprioritize_current_thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kame_cli.backends.oracle.llama_child")
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--api-key-env", default="")
    parser.add_argument("--cache-ram-mib", type=int, default=256)
    args = parser.parse_args(argv)
    deprioritize_current_thread()  # before the server's threads exist: they inherit it

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.gguf
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.n_ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_slots = True
    params.cache_ram_mib = args.cache_ram_mib
    params.verbosity = 0
    if args.api_key_env:
        params.api_keys = [os.environ[args.api_key_env]]
    server = xllamacpp.Server(params)

    tmp = args.ready_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as ready:
        ready.write(server.listening_address)
    os.replace(tmp, args.ready_file)  # the parent never sees a half-written file

    # The parent closes our stdin to stop us (or dies, which closes it too).
    sys.stdin.buffer.read()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the server's destructor: it waits for in-flight requests and can hang (FACTS.md).
    os._exit(0)


if __name__ == "__main__":
    main()
