#!/usr/bin/env bash
# Set everything up, then reproduce the paper's Table 2 (two spirals, every mixup layer range,
# 0-40% label noise; one seed, the full 300-epoch schedule) with the vectorized trainer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/latentmix reproduce spiral --seeds "${SEEDS:-1}" "$@"
