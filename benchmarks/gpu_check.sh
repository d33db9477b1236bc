#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and PyTorch (or JAX) but no TensorFlow and no MLflow.
# Prepare once on a machine with pip (Python 3.12 wheels for the GPU machine; keras's own needs beyond what
# such an image usually has):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
# The machine needs numpy, pandas and scipy too (lrnoise.noise.injection's statistics); add them to the download if its
# image lacks them.
# Then run from the repository root there:  bash benchmarks/gpu_check.sh   (KERAS_BACKEND=jax also works)
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export KERAS_BACKEND="${KERAS_BACKEND:-torch}" LRNOISE_PIPELINE=numpy PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi: running on the CPU"
python3 benchmarks/gpu_check.py
