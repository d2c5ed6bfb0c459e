#!/usr/bin/env bash
# Set up ./.venv with latentmix, its test tools, and PyTorch.
#
# The venv sees the system's site-packages, so a PyTorch you already have (CUDA or not) is kept.
# Where no torch is importable, the CPU wheel is installed: a plain `pip install torch` would
# pull a multi-GB CUDA build on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_CPU_VERSION="${LATENTMIX_TORCH_VERSION:-2.13.0}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: no PyTorch found; installing the CPU build torch==${TORCH_CPU_VERSION}"
    .venv/bin/python -m pip install --quiet "torch==${TORCH_CPU_VERSION}" \
        || .venv/bin/python -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
# The Lightning extra lets the tests run the Lightning callback; where it cannot be installed
# (offline, an old Python) those tests skip and say why.
.venv/bin/python -m pip install --quiet -e ".[test,lightning]" \
    || { echo "setup: could not install latentmix[lightning]; its tests will skip"; .venv/bin/python -m pip install --quiet -e ".[test]"; }
.venv/bin/python -c "import torch, latentmix; print(f'setup: latentmix ready (torch {torch.__version__}, cuda {torch.cuda.is_available()})')"
