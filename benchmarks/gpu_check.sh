#!/usr/bin/env bash
# The GPU checks of the speed work, for a machine with one CUDA GPU (H100/H200 class):
#   tests    the tests that need CUDA (they skip without it): `pytest -m cuda` if that marker exists, and
#            every test file that asks torch.cuda.is_available(), fast tests only, skip reasons listed;
#   train    benchmarks/train_step.py at the paper's size, bf16-mixed, eager (every method);
#   compile  the same with torch.compile (QLAE and Tripod, the methods the targets name: Tripod <= 15 ms,
#            QLAE <= 5 ms, Tripod / QLAE <= 2.65; Tripod both with NHP's float32 differences and with the
#            configs' exact second derivatives, tripod_jvp);
#   metrics  benchmarks/metrics_speed.py with the torch backend on the GPU against scikit-learn as the
#            reference code calls it;
#   nhp      benchmarks/nhp_numerics.py --train-log: Tripod (float32 NHP differences) trained 300 steps at the
#            paper's size, logging the latents' batch stds, NHP's gradient norm and, every 25 steps, the
#            float32-vs-float64 gradient error (a run cut by the time limit still saves the steps it logged).
#   sweep    (not part of "all") sweeps/procedural_gpu.yaml: the procedural results, 8 methods x 3 seeds at the
#            CPU widths, 20,000 steps with cosine decay, $SWEEP_PARALLEL (default 12) runs at a time on the one
#            GPU (under CUDA MPS where the daemon starts), Tripod and the baselines first, within $SWEEP_SECONDS
#            (default 480). About 10 GFLOP a step, 4.8 PFLOP for all 24 runs. The finished runs' records and the
#            collected table come back as one archive, procedural_gpu.tar.gz (commit its results/procedural_gpu/
#            to keep them: a later sweep skips the recorded runs). $SWEEP names another sweep file. Rehearse the
#            stage on a CPU before spending GPU time (ALLOW_CPU=1 skips the GPU requirement):
#              ALLOW_CPU=1 SWEEP=sweeps/procedural_gpu_rehearsal.yaml SWEEP_PARALLEL=2 bash benchmarks/gpu_check.sh sweep
# Usage: benchmarks/gpu_check.sh [all|tests|train|compile|metrics|nhp|sweep ...] (default: all, about 10-13
# minutes; split the stages over two runs where one command may not run that long).
# Runs this checkout from src/ (no install) with the python that holds a CUDA build of torch ($PYTHON,
# default python3; it also needs pytest and the package's requirements). A requirement that python lacks (a CUDA
# image often has no jsonargparse or omegaconf, which the sweep's tripod-train needs) is installed from the
# wheels in $WHEELHOUSE (default wheelhouse/), with no package index, into a folder put on PYTHONPATH. Make that
# folder where pip reaches an index (`python scripts/wheelhouse.py download --python 3.12 --only jsonargparse
# omegaconf`, the python of the GPU machine) and bring it along. Results go to
# benchmarks/results/; when $OUT names a folder (the device machine's return folder), the log and copies of
# the results go there too. Exit status: 0 when every stage passed, 1 when one failed, 2 without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
RESULTS=benchmarks/results
LOG=${OUT:-$RESULTS}/gpu_check.log
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

# what the package needs and this python lacks (torch aside: its CUDA build is the one to use)
lacking() { "$PY" scripts/wheelhouse.py missing | grep -vE '^torch[^A-Za-z0-9_.-]'; }
missing=$(lacking)
wheels=${WHEELHOUSE:-wheelhouse}
if [ -n "$missing" ] && [ -d "$wheels" ]; then
    site=${TMPDIR:-/tmp}/tripod_pl_site
    "$PY" scripts/wheelhouse.py install --wheels "$wheels" --target "$site" \
        && export PYTHONPATH="$site:$PYTHONPATH"
    missing=$(lacking)
fi
if [ -n "$missing" ]; then
    echo "gpu_check: $PY lacks these requirements; the stages that import them will fail:"
    echo "$missing" | sed 's/^/    /'
    echo "    (scripts/wheelhouse.py download, where pip reaches an index, makes wheelhouse/ for this machine)"
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ -z "${ALLOW_CPU:-}" ]; then
        echo "gpu_check: $PY sees no CUDA GPU (torch.cuda.is_available() is False); nothing checked"
        exit 2
    fi
    echo "gpu_check: no CUDA GPU; ALLOW_CPU is set, so this is a rehearsal on the CPU"
fi
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"

status=0
stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, record failure, keep going
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local start=$SECONDS
    timeout --signal=INT "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || status=1
}

stages=${*:-all}
want() { [[ " $stages " == *" all "* || " $stages " == *" $1 "* ]]; }

if want tests; then
    mapfile -t files < <(grep -rlE "cuda\.is_available\(\)|mark\.cuda|requires_cuda" tests --include='test_*.py' | sort)
    if grep -qE '^\s*"cuda:' pyproject.toml; then
        stage "tests (-m cuda)" 300 "$PY" -m pytest -q -p no:cacheprovider -rs -m cuda tests
    fi
    if [ "${#files[@]}" -gt 0 ]; then  # (no file named would make pytest run the whole suite)
        stage "tests (files that need CUDA: ${files[*]})" 300 "$PY" -m pytest -q -p no:cacheprovider -rs \
            -m "not slow" "${files[@]}"
    fi
fi
# channels-last networks and images where the model offers them (as a user turning every option on would)
mapfile -t layout < <("$PY" -c "import inspect; from tripod_pl.model import TripodAutoencoder as T
if 'channels_last' in inspect.signature(T).parameters: print('--channels-last')")
if want train; then
    stage "train_step bf16 eager" 240 "$PY" benchmarks/train_step.py --device cuda --size paper \
        --precision bf16-mixed --steps 30 --warmup 5 "${layout[@]}"
fi
if want compile; then
    stage "train_step bf16 compile" 420 "$PY" benchmarks/train_step.py --device cuda --size paper \
        --precision bf16-mixed --steps 30 --warmup 5 "${layout[@]}" --compile --methods qlae tripod tripod_jvp
fi
if want metrics; then
    stage "metrics_speed cuda" 240 "$PY" benchmarks/metrics_speed.py --device cuda --baselines reference
fi

if want nhp; then
    stage "nhp train log" 150 "$PY" benchmarks/nhp_numerics.py --train-log --device cuda --size paper \
        --steps 300 --check-every 25
fi

if [[ " $stages " == *" sweep "* ]]; then
    # the dataset once, not by every run at once
    [ -f data/procedural.h5 ] || { mkdir -p data && "$PY" -m tripod_pl.data.prepare.cli generate data/procedural.h5 >/dev/null; }
    mps=0
    if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d 2>/dev/null; then
        mps=1  # kernels of the runs' processes share the GPU's SMs instead of taking turns
    fi
    echo "sweep: CUDA MPS $([ "$mps" -eq 1 ] && echo on || echo off)"
    sweep=${SWEEP:-sweeps/procedural_gpu.yaml}
    read -r sweep_name sweep_root < <("$PY" -c "import sys; from tripod_pl.sweep.spec import load_sweep
spec = load_sweep(sys.argv[1]); print(spec.name, spec.root)" "$sweep")
    stage "procedural sweep on the GPU" "${SWEEP_SECONDS:-480}" "$PY" -m tripod_pl.cli.sweep run \
        "$sweep" --parallel "${SWEEP_PARALLEL:-12}"
    # whatever finished, also when the time ran out: its table, figure and records
    "$PY" -m tripod_pl.cli.sweep collect "$sweep" --out results || status=1
    [ "$mps" -eq 1 ] && echo quit | nvidia-cuda-mps-control
    if [ -n "${OUT:-}" ]; then
        tar czf "$OUT/$sweep_name.tar.gz" results/"$sweep_name"* \
            $(ls "$sweep_root"/*/*/seed*/sweep.log 2>/dev/null) || status=1
    fi
fi

if [ -n "${OUT:-}" ]; then  # at most 8 files come back: the log and these
    for f in "$RESULTS"/train_step_cuda_paper_bf16*.json "$RESULTS"/train_step_cuda_paper_bf16*_profile.txt \
        "$RESULTS"/metrics_speed_cuda.json "$RESULTS"/nhp_train_log_cuda_paper.json; do
        [ -f "$f" ] && cp "$f" "$OUT"/
    done
fi
echo "gpu_check: $([ "$status" -eq 0 ] && echo 'every stage passed' || echo 'a stage FAILED (see above)')"
exit "$status"
