#!/usr/bin/env bash
# Issue #28: prepare, on the development machine and in the checkout a GPU session sends to the
# device tool, what benchmarks/gpu_session.sh needs there that the repository does not hold:
#   .gpu-data/fashion-mnist/  the four Fashion-MNIST IDX files (30 MB; the device has no data sets)
#   .whl/                     optuna and the packages it needs that the device's image lacks, as
#                             wheels for its Python 3.12 on x86-64 (the device reaches no registry)
# Both paths are in .gitignore, so they travel only because the run's `carry` names them. Together
# with the tracked files they stay well under the tool's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
mkdir -p .gpu-data/fashion-mnist .whl
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    cp -n "$SOURCE/$name.gz" .gpu-data/fashion-mnist/ 2>/dev/null || cp -n "$SOURCE/$name" .gpu-data/fashion-mnist/
done
# the versions of this project's own environment; numpy, PyYAML, tqdm, packaging, MarkupSafe and
# typing-extensions are in the device's image already (KINDS.md's package list)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl optuna==5.1.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3
du -sh .gpu-data .whl
