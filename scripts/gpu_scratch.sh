#!/usr/bin/env bash
# Proof on a machine without a GPU that the wheel set (.whl, from scripts/gpu_wheels.py) is complete
# for the lent machine's image (docs/gpu.md): a scratch Python 3.12 venv holding stand-ins for the
# image's packages at the versions its list gives (torch 2.11.0 with CUDA 13, huggingface-hub 1.33,
# numpy 2.5.2, ...), and nothing the image lacks; the set installed by the device's own command;
# its completeness check; then gpu_check.sh's parts on CPU with random:tiny.
#
#   bash scripts/gpu_scratch.sh [OUT_DIR]     (default gpu-check-out; ~4 min, 7 GB in /tmp)
set -eu
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu-check-out}
PY312=${PY312:-$HOME/.pyenv/versions/3.12.1/bin/python}
VENV=${SCRATCH_VENV:-/tmp/kame-gpu-scratch}
SITE=${SCRATCH_SITE:-/tmp/kame-gpu-site}
[ -d .whl ] || { echo "gpu_scratch: no .whl folder: run python scripts/gpu_wheels.py first" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PY312" -m venv "$VENV"
PY="$VENV/bin/python"
# What the check imports from the image, pinned where the image's list gives a version.
"$PY" -m pip install -q --disable-pip-version-check torch==2.11.0 numpy==2.5.2 huggingface-hub==1.33.0 \
    safetensors==0.8.0 sentencepiece==0.2.2 tokenizers==0.23.2 typer rich requests pyyaml einops packaging \
    tqdm aiohttp psutil typing-extensions httpx click
# Whatever pip pulled in that the image does not list goes again: the scratch venv must lack what the device lacks.
extra=$("$PY" - <<'EOF'
import importlib.metadata as md, sys
sys.path.insert(0, "scripts")
from gpu_wheels import canonical, read_image
print(" ".join(sorted({canonical(d.metadata["Name"]) for d in md.distributions()} - set(read_image()))))
EOF
)
[ -z "$extra" ] || "$PY" -m pip uninstall -q -y $extra
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
mkdir -p "$OUT_DIR"
PYTHONPATH="$SITE" "$PY" scripts/gpu_complete.py "$SITE" | tee "$OUT_DIR/complete.txt"
PYTHON="$PY" GPU_SITE="$SITE" PYTHONPATH="$SITE" GPU_CHECK_MODEL=random:tiny GPU_CHECK_DEVICE=cpu \
    bash scripts/gpu_check.sh env bf16 int8 nographs serve batch paced -- "$OUT_DIR"
