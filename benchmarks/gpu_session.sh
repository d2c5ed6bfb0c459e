#!/usr/bin/env bash
# Issue #28: the one command a session with a lent GPU passes to the device tool, from the
# repository root there (docs: benchmarks/README.md, "GPU measurement"):
#
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl", ".gpu-data"], timeout_s=480)
#
# Prepared here first, once, in the checkout that session sends: `bash benchmarks/gpu_prepare.sh`
# (the Fashion-MNIST IDX files into .gpu-data/ and optuna's wheels into .whl/, both ignored by git,
# so they travel only because `carry` names them).
#
# Set-up there: nothing is built. The device's python3 already holds PyTorch with CUDA (KINDS.md:
# torch 2.11 + cu130); scripts/setup.sh does not apply (its venv would not see that torch, and
# nothing can be fetched there), so the project runs from src/ on PYTHONPATH, and optuna (the sweep
# store `reproduce` trains through), missing from the image, is installed from the carried wheels.
#
# Then, each under a hard time limit, results written under $OUT as they come:
#   1. benchmarks/bench_gpu.py (budget BENCH_BUDGET_S, default 200 s; killed at budget + 80 s, its
#      files are rewritten after every configuration);
#   2. benchmarks/gpu_table_time.py: the Fashion-MNIST MLP and SmallCNN tables, 3 seeds, with a
#      cap of TABLE_CAP_S (default 140 s) for both.
# Worst case ~455 s, typically ~6 min; $OUT then holds bench_gpu.{md,json}, fashion_gpu.{md,json},
# fashion_<model>_table.md of a finished table and session.log (7 files at most; the tool returns 8).
# SMOKE=1 runs both scripts' --smoke variants (the CPU check of this file); PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-session}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
BENCH_BUDGET_S="${BENCH_BUDGET_S:-200}"
TABLE_CAP_S="${TABLE_CAP_S:-140}"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

session() {
    echo "== machine ($(date -u '+%Y-%m-%d %H:%M:%S') UTC)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/latentmix-site \
            .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/latentmix-site"
    fi
    local smoke=()
    [ "${SMOKE:-0}" = 1 ] && smoke=(--smoke)

    echo "== bench_gpu.py (budget ${BENCH_BUDGET_S} s)"
    timeout --kill-after=10 "$((BENCH_BUDGET_S + 80))" \
        "$PYTHON" benchmarks/bench_gpu.py --out "$OUT" --budget-s "$BENCH_BUDGET_S" "${smoke[@]}"
    echo "bench_gpu.py exit $?"

    echo "== Fashion-MNIST tables (cap ${TABLE_CAP_S} s)"
    if ! "$PYTHON" -c "import optuna" 2>/dev/null; then
        echo "skipped: optuna is missing (run benchmarks/gpu_prepare.sh here and carry .whl)"
    elif [ ! -d .gpu-data/fashion-mnist ] && [ "${SMOKE:-0}" != 1 ]; then
        echo "skipped: .gpu-data/fashion-mnist is missing (run benchmarks/gpu_prepare.sh here and carry .gpu-data)"
    else
        local data=()
        [ -d .gpu-data/fashion-mnist ] && data=(--data-dir .gpu-data/fashion-mnist)
        timeout --kill-after=10 "$((${TABLE_CAP_S%.*} + 40))" "$PYTHON" benchmarks/gpu_table_time.py "${data[@]}" \
            --device cuda --workers 8 --cap-s "$TABLE_CAP_S" --out "$OUT" "${smoke[@]}"
        echo "gpu_table_time.py exit $?"
    fi
    echo "== done ($(date -u '+%H:%M:%S') UTC)"
    ls -la "$OUT"
}

session 2>&1 | tee "$OUT/session.log"
