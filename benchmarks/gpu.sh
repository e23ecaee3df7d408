#!/usr/bin/env bash
# GPU checks and benchmarks in one call, for a session lent a GPU machine (see the device tool's
# README). Run from the repository root on the device:  bash benchmarks/gpu.sh
#
# The device has Python 3.12 with JAX (CUDA), numpy, pandas, pyarrow, typer, scipy, xarray and
# matplotlib. Carry the rest as wheels in .whl/ (ignored by git), prepared here once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl arviz==0.23.4 xarray-einstats pydantic==2.13.4 pydantic-core==2.46.4 annotated-types \
#     typing-inspection typing-extensions platformdirs h5netcdf
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
S=configs/default.yaml  # (the package is not installed there, so the embedded default is named by path)
MC="python3 -m mcrisk"
TIMEFORMAT='%R s wall'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"

# Most important first; each step has its own time limit, so one slow step cannot eat the rest.
# 1. The numbers are right on the GPU: the worked checks and the independent float64 model.
# (-o addopts= : one process, no pytest-xdist needed on the device)
timeout 90 python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_run.py \
  -k "seed_claims or independent or volatile or chunk_size" 2>&1 | tail -3
# ... and the fused month-loop kernel (Triton, compiled for this card) against the lax.scan loop.
timeout 120 python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_fused.py -k "metrics or chunk_size_must" 2>&1 | tail -3

# 2. Where the time goes, stage by stage, on one chunk (month-loop unrolls, the fused kernel in
# four block shapes, IRR share, compiling in threads) ...
timeout 180 python3 benchmarks/kernels.py --study $S --chunk 1048576 --unroll 1 4 8 --json "$OUT/gpu-kernels.json"
# ... and the bytes each simulate variant moves, counted from the program compiled for this card
# (the prediction benchmarks/traffic.py makes with no GPU, to set against the times above).
timeout 60 python3 benchmarks/traffic.py --study $S --unroll 4 8 --json "$OUT/gpu-traffic.json"

# 3. 1e8 scenarios, summaries only: the stage table (a fresh process, no compilation cache) ...
timeout 90 python3 benchmarks/bench.py --study $S --sizes 1e8 --no-scenarios --numpy-up-to 0 --json "$OUT/gpu-1e8.json"
timeout 90 python3 benchmarks/bench.py --study $S --sizes 1e8 --no-scenarios --numpy-up-to 0 --month-kernel fused \
  --json "$OUT/gpu-1e8-fused.json"
# ... and the command itself, start to end: with no compilation cache, then with a warm one.
time timeout 60 env MCRISK_CACHE_DIR=off $MC run $S --scenarios 100000000 --no-scenarios --no-stress --out /tmp/r-cold -q
cp /tmp/r-cold/manifest.json "$OUT/gpu-1e8-cli-cold.json"
export MCRISK_CACHE_DIR=/tmp/xla-cache
timeout 60 $MC run $S --scenarios 100000000 --no-scenarios --no-stress --out /tmp/r-fill -q
time timeout 60 $MC run $S --scenarios 100000000 --no-scenarios --no-stress --out /tmp/r-warm -q
cp /tmp/r-warm/manifest.json "$OUT/gpu-1e8-cli-warm.json"
timeout 60 $MC run $S --scenarios 100000000 --no-scenarios --no-stress --month-kernel fused --out /tmp/r-ffill -q
time timeout 60 $MC run $S --scenarios 100000000 --no-scenarios --no-stress --month-kernel fused --out /tmp/r-fwarm -q
cp /tmp/r-fwarm/manifest.json "$OUT/gpu-1e8-cli-fused-warm.json"
export MCRISK_CACHE_DIR=off

# 4. Parquet at 1e6 and 1e7; the NumPy implementation of the same model against mcrisk at 1e5.
timeout 120 python3 benchmarks/bench.py --study $S --sizes 1e6 1e7 --numpy-up-to 0 --json "$OUT/gpu-parquet.json"
timeout 90 python3 benchmarks/bench.py --study $S --sizes 1e5 --numpy-up-to 1e5 --json "$OUT/gpu-numpy.json"

# 5. The default study as it stands (three stresses, each 1e8 more scenarios), warm cache.
export MCRISK_CACHE_DIR=/tmp/xla-cache
time timeout 90 $MC run $S --scenarios 100000000 --no-scenarios --out /tmp/r-stress -q
export MCRISK_CACHE_DIR=off

# 6. The optimized HLO of every stage, for reading offline.
XLA_FLAGS="--xla_dump_to=/tmp/dump --xla_dump_hlo_as_text" timeout 60 python3 benchmarks/kernels.py --study $S \
  --chunk 1048576 --unroll 4 --repeat 1 > /dev/null 2>&1
tar czf "$OUT/gpu-hlo.tgz" -C /tmp/dump $(cd /tmp/dump 2>/dev/null && ls | grep after_optimizations.txt) 2>/dev/null
ls -la "$OUT"
