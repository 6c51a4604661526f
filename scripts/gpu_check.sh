#!/usr/bin/env bash
# Every GPU figure issue 9 asks for, in one short run on a CUDA machine with kame installed.
#
#   bash scripts/gpu_check.sh [all|frontend|stt] [OUT_DIR]
#
#   frontend (~4 min on an H100): `kame doctor` there; random:7b bf16 and int8 (step p50/p99, peak
#            VRAM against the doctor's plan, overhead vs bare moshi); the random:tiny overhead probe.
#   stt      (~5 min): CTranslate2 on CUDA; small.en / distil-small.en / base.en / tiny.en on CUDA
#            (WER, decode time per step, VRAM); a paced file session with random:7b and the STT on
#            CUDA (step p99, deadline misses, STT commit lag, VRAM).
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3); AUDIO_DIR the speech for
# the STT table (default ../shared/audio when present, else the bench's espeak-ng clips). Writes
# three files to OUT_DIR (default $OUT, else gpu-check-out): summary.txt, results.jsonl, logs.txt.
set -u
PART=${1:-all}
OUT_DIR=${2:-${OUT:-gpu-check-out}}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/kame-gpu-check.XXXXXX)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT_DIR/summary.txt" RESULTS="$OUT_DIR/results.jsonl" LOGS="$OUT_DIR/logs.txt"
: >"$SUMMARY"; : >"$RESULTS"; : >"$LOGS"

say() { echo "$*" | tee -a "$SUMMARY"; }

# run NAME LIMIT_S CMD...: stdout's last line (JSON) goes to results.jsonl as {"name": ..., "result": ...};
# stderr to logs.txt; the GPU's memory.used is sampled every 200 ms while it runs (peak_vram_mib).
run() {
    local name=$1 limit=$2
    shift 2
    say "== $name: $*"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$WORK/$name.vram" 2>/dev/null &
    local sampler=$!
    local started=$SECONDS
    timeout "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    local peak
    peak=$(sort -n "$WORK/$name.vram" 2>/dev/null | tail -1)
    { echo "--- $name (exit $rc)"; tail -c 4000 "$WORK/$name.err"; } >>"$LOGS"
    "$PY" - "$name" "$rc" "$((SECONDS - started))" "${peak:-}" "$WORK/$name.out" >>"$RESULTS" <<'EOF'
import json, sys
name, rc, wall, peak, path = sys.argv[1:6]
text = open(path, encoding="utf-8", errors="replace").read().strip()
try:
    result = json.loads(text.splitlines()[-1]) if text else None
except ValueError:
    result = text[-3000:]  # a bench's human report
print(json.dumps({"name": name, "exit": int(rc), "wall_s": int(wall),
                  "peak_vram_mib": int(peak) if peak.strip().isdigit() else None, "result": result}))
EOF
    say "   exit $rc, $((SECONDS - started)) s, GPU memory.used peak ${peak:-?} MiB"
    tail -n 12 "$WORK/$name.out" | sed 's/^/   /' | cut -c1-400 | tee -a "$SUMMARY" >/dev/null
}

say "kame GPU check ($PART) $(date -u +%FT%TZ) in $PWD"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' 2>&1 | tee -a "$SUMMARY"
ls /usr/local/cuda*/lib64/libcublas.so* 2>/dev/null | head -2 | sed 's/^/system cuBLAS: /' | tee -a "$SUMMARY"

if [ "$PART" = all ] || [ "$PART" = frontend ]; then
    run doctor 180 "$PY" -m kame_cli.cli doctor --model random:7b --json
    run frontend-bf16 300 "$PY" scripts/gpu_probe.py frontend --model random:7b --quantize none --steps 600
    run frontend-int8 300 "$PY" scripts/gpu_probe.py frontend --model random:7b --quantize int8 --steps 600
    run overhead-tiny 240 "$PY" scripts/gpu_probe.py overhead --steps 300 --rounds 6
fi

if [ "$PART" = all ] || [ "$PART" = stt ]; then
    AUDIO_DIR=${AUDIO_DIR:-../shared/audio}
    AUDIO_ARGS=()
    [ -d "$AUDIO_DIR" ] && AUDIO_ARGS=(--audio-dir "$AUDIO_DIR")
    # CTranslate2 on CUDA in a fresh process: the preload alone, torch not imported first.
    run stt-cuda 120 "$PY" -c 'import json, ctranslate2; from kame_cli.backends.stt.cuda import preload_cuda_libraries; from kame_cli.backends.stt.config import SttConfig; from kame_cli.backends.stt.model import load_stt_model; r = preload_cuda_libraries(); m = load_stt_model(SttConfig(model="tiny.en", device="auto")); print(json.dumps({"ct2": ctranslate2.__version__, "gpus": ctranslate2.get_cuda_device_count(), "libraries": r.describe(), "loaded": m.describe(), "fallback": m.fallback}))'
    for model in small.en distil-small.en base.en tiny.en; do
        run "stt-$model" 240 "$PY" -m kame_cli.cli bench stt --model "$model" --device cuda --fast "${AUDIO_ARGS[@]}"
    done
    # A paced file session: random:7b on CUDA, the STT on CUDA (auto), SmolLM2 on CPU as the oracle.
    sed -e 's/^model = "tiny.en"$/model = "auto"/' -e 's/^device = "cpu"$/device = "auto"/' \
        -e 's/^model = "random:tiny"$/model = "random:7b"/' profiles/offline.toml >"$WORK/gpu-session.toml"
    if command -v espeak-ng >/dev/null && command -v sox >/dev/null; then
        espeak-ng -w "$WORK/q1.wav" "What is the capital city of France?"
        espeak-ng -w "$WORK/q2.wav" "How many legs does a spider have, and why do they need so many?"
        sox "$WORK/q1.wav" "$WORK/q2.wav" "$WORK/question.wav" pad 0.5 6 2>/dev/null ||
            sox "$WORK/q1.wav" "$WORK/question.wav" pad 0.5 6
    else
        "$PY" -c 'import numpy as np, soundfile as sf; t = np.arange(24000 * 12) / 24000; sf.write("'"$WORK"'/question.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 24000)'
    fi
    LLM_ARGS=()
    "$PY" -c 'import xllamacpp' 2>/dev/null || LLM_ARGS=(--no-llm)
    run session 300 "$PY" -m kame_cli.cli talk --profile "$WORK/gpu-session.toml" --input "$WORK/question.wav" \
        --output "$WORK/answer.wav" --log-dir "$WORK/log" --no-ui "${LLM_ARGS[@]}"
    run session-stats 60 "$PY" scripts/gpu_probe.py session "$WORK/log/events.jsonl"
fi

# The issue's targets, from the figures above.
"$PY" - "$RESULTS" <<'EOF' | tee -a "$SUMMARY"
import json, sys
rows = {}
for line in open(sys.argv[1], encoding="utf-8"):
    row = json.loads(line)
    rows[row["name"]] = row
def result(name):
    value = rows.get(name, {}).get("result")
    return value if isinstance(value, dict) else None
bf16, int8 = result("frontend-bf16"), result("frontend-int8")
for label, r in (("bf16", bf16), ("int8", int8)):
    if r:
        verdict = "met" if r["engine_p99_ms"] <= 40 else "MISSED"
        print(f"targets: random:7b {label} engine p99 {r['engine_p99_ms']} ms (<= 40 ms: {verdict}), "
              f"peak reserved {r['peak_reserved_bytes'] / 2**30:.1f} GiB vs doctor plan {r['doctor_plan_bytes'] / 2**30:.1f} GiB, "
              f"overhead vs bare {r['overhead_p50_pct']:+.1f} % (p50)")
if bf16 and int8:
    ratio = int8["peak_reserved_bytes"] / bf16["peak_reserved_bytes"]
    print(f"targets: int8 peak VRAM {ratio:.0%} of bf16 (<= 60 %: {'met' if ratio <= 0.6 else 'MISSED'})")
s = result("session-stats")
if s:
    print(f"targets: session step p99 {s['step_p99_ms']} ms, {s['deadline_misses']} deadline misses, "
          f"commit lag p50 {s['commit_lag_p50_s']} s, STT: {s['stt_status']}")
EOF
say "== done: $SUMMARY, $RESULTS, $LOGS"
rm -rf "$WORK"
