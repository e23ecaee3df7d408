#!/usr/bin/env bash
# GPU checks and benchmarks in one call, for a session lent a GPU machine (see the device tool's
# README). Run from the repository root on the device:  bash benchmarks/gpu.sh
#
# The device has Python 3.12 with JAX (CUDA), numpy, pandas, pyarrow, typer, scipy, xarray and
# matplotlib. Carry the rest as wheels in .whl/ (ignored by git), prepared here once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl arviz==0.23.4 xarray-einstats pydantic pydantic-core annotated-types typing-inspection \
#     pyyaml rich markdown-it-py mdurl pygments h5netcdf h5py pytest pluggy iniconfig hypothesis \
#     sortedcontainers shellingham
# and name .whl in the run's carry list. Results land in $OUT (or benchmarks/results/).
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MCRISK_CACHE_DIR=off
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
} 2>&1 | tee "$OUT/gpu-device.txt"

# 1. The numbers are right on the GPU: the worked checks and the independent float64 model.
# (-o addopts= : one process, no pytest-xdist needed on the device)
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_run.py \
  -k "seed_claims or independent or volatile or chunk_size" 2>&1 | tail -5 | tee "$OUT/gpu-tests.txt"

# 2. Throughput: with Parquet at 1e6 and 1e7, summaries only at 1e7 and 1e8.
timeout 300 python3 benchmarks/bench.py --sizes 1e6 1e7 --numpy-up-to 0 --json "$OUT/gpu-parquet.json"
timeout 420 python3 benchmarks/bench.py --sizes 1e7 1e8 --no-scenarios --numpy-up-to 0 --json "$OUT/gpu-summaries.json"
