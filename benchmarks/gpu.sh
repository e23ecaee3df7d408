#!/usr/bin/env bash
# GPU checks and benchmarks in one call, for a session lent a GPU machine (see the device tool's
# README). Run from the repository root on the device:
#   bash benchmarks/gpu.sh 2>&1 | tee $OUT/gpu-log.txt
#
# The device has Python 3.12 with JAX (CUDA), numpy, pandas, pyarrow, typer, scipy, xarray and
# matplotlib. Carry the rest as wheels in .whl/ (ignored by git), prepared here once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl arviz==0.23.4 xarray-einstats pydantic==2.13.4 pydantic-core==2.46.4 annotated-types \
#     typing-inspection typing-extensions platformdirs h5netcdf
# and name .whl in the run's carry list.
#
# The steps run most important first, each under its own time limit and all of them under one
# budget (GPU_BUDGET seconds, default 540): a step that would start with too little time left is
# skipped and says so, so the call ends inside the device tool's 600 s limit with everything it
# measured. The JSON of every step is packed into one archive after each step (the device tool
# brings back at most 8 files): $OUT/gpu-results.tgz, plus $OUT/gpu-hlo.tgz. GPU_STEPS names the steps
# to run (their keys, below; default all), so that a lease can be split between two calls.
set -uo pipefail
OUT=${OUT:-outputs/bench}
BUDGET=${GPU_BUDGET:-540}
RES=$(mktemp -d)
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MCRISK_CACHE_DIR=off TIMEFORMAT='%R s from start to exit'
S=configs/default.yaml  # (the package is not installed there, so the embedded default is named by path)
N=${GPU_N:-100000000}  # (GPU_N, GPU_CHUNK: smaller, to try the script on a CPU)
C=${GPU_CHUNK:-1048576}

STEPS=" ${GPU_STEPS:-kernels startup transfer irr irrtests tests cold compilelog autotune bench fill warm write numpy traffic stress profile hlo} "  # which steps run (GPU_STEPS)

step() {  # step KEY LIMIT NAME COMMAND...: run COMMAND under min(LIMIT, what is left of the budget)
  local key=$1 limit=$2 name=$3 left=$((BUDGET - SECONDS)) t0=$SECONDS rc
  shift 3
  if [[ $STEPS != *" $key "* ]]; then echo "## not asked for: $name"; return; fi
  if ((left < 15)); then echo "## skipped: $name (${left} s of the budget left)"; return; fi
  ((limit > left)) && limit=$left
  echo "## [${SECONDS} s] $name (limit ${limit} s)"
  timeout "$limit" "$@"
  rc=$?
  echo "## [${SECONDS} s] $name: exit $rc after $((SECONDS - t0)) s"
  tar czf "$OUT/gpu-results.tgz" -C "$RES" . 2>/dev/null
}
mc() { python3 -m mcrisk "$@"; }  # for `bash -c "time mc ..."`: the command timed from start to exit
# coldlog TAG [VAR=VALUE...]: a cold 1e8 --no-scenarios run with JAX's compile log, in that
# environment; keeps the log and the manifest, prints each program's compile time and the stages.
coldlog() {
  local tag=$1
  shift
  time env "$@" JAX_LOG_COMPILES=1 python3 -m mcrisk run $S --scenarios $N --no-scenarios --no-stress \
    --out /tmp/r-$tag -q --force 2> "$RES/gpu-compile-$tag.txt"
  cp /tmp/r-$tag/manifest.json "$RES/gpu-1e8-$tag.json"
  grep -E 'Finished XLA compilation' "$RES/gpu-compile-$tag.txt" | sed 's/.*compilation of //'
  python3 -c "import json; print(json.load(open('$RES/gpu-1e8-$tag.json'))['seconds'])"
}
export -f mc coldlog
export S N RES

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
python3 -c "import jax, jaxlib; print('jax', jax.__version__, jax.devices())"

# 1. Where the time goes, stage by stage, on one chunk: the month loop 4 and 8 months per step,
# with and without the monthly bands, the IRR's share, the summaries in each device layout of
# their sketches (copies, interleaving), compiling in threads, the card's copy rate.
step kernels 180 "kernels: each stage of one 2^20-scenario chunk" \
  python3 benchmarks/kernels.py --study $S --chunk $C --unroll 4 8 --json "$RES/gpu-kernels.json"

# 1b. A process's start (importing, the backend and its memory pool, the first program), fresh
# processes: the backend started after the imports or beside them (--early), the thread also
# making the first array (--early-alloc, as mcrisk run does), and with JAX's memory pool not
# preallocated; once, the end too (--exit: JAX's clean-up at exit, which mcrisk run's exit
# runs); then the copy of one chunk's block of scenario rows to the host, by each way JAX offers.
step startup 50 "start-up: import, backend, first program" bash -c \
  "for a in '' --early --early-alloc '' --early '--early-alloc --exit'; do python3 benchmarks/startup.py \$a --json $RES/gpu-startup.jsonl; done; \
   XLA_PYTHON_CLIENT_PREALLOCATE=false python3 benchmarks/startup.py --json $RES/gpu-startup.jsonl"
step transfer 40 "a chunk's row block to the host" python3 benchmarks/transfer.py --json "$RES/gpu-transfer.json"
# 1c. How the IRR evaluates NPV (Estrin's scheme in the Newton steps, what GPUs run; Estrin in the
# search too; Horner over every month; Horner 8 months a pass, what they ran before): the simulate
# stage's compile time against its run time.
step irr 60 "the IRR's NPV scheme: compile against run" python3 benchmarks/irr_unroll.py --study $S --chunk $C --unroll estrin estrin-all 47 8 --json "$RES/gpu-irr-unroll.json"
# ... and Estrin's numbers on the card: NPV and its derivative against Horner's and a float64
# sum, the IRR's edge cases and 240-month horizons, equal IRRs and gradients.
step irrtests 60 "tests: the IRR by Estrin's scheme" \
  python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_model.py \
  -k "estrin_and_horner or estrin_irrs or (edge_cases and estrin) or (long_horizons and estrin)"

# 2. The numbers are right on this card: the worked checks, the independent float64 model,
# the volatile paths, chunk-size invariance, and the same summaries in either sketch layout.
# (-o addopts= : one process, no pytest-xdist)
step tests 100 "tests: worked checks, float64 model, chunk sizes, sketch layouts" \
  python3 -m pytest -q -p no:cacheprovider -o addopts= tests/test_run.py \
  -k "seed_claims or independent or volatile or chunk_size or sketch_layout or subset_of_columns or row_block"

# 3. The end-to-end target: 1e8 scenarios, summaries only, a fresh process with no
# compilation cache, start to exit.
step cold 50 "mcrisk run 1e8 --no-scenarios, no compilation cache" bash -c \
  "time mc run $S --scenarios $N --no-scenarios --no-stress --out /tmp/r-cold -q --force \
   && cp /tmp/r-cold/manifest.json $RES/gpu-1e8-cli-cold.json"

# ... and again with JAX's compile log: each program's tracing, lowering and compiling, in order.
step compilelog 50 "mcrisk run 1e8 --no-scenarios, no cache, JAX's compile log" bash -c "coldlog log"

# ... and with XLA's autotuning off (level 0): how much of each stage's compile is the
# autotuner's. (Triton's GEMMs, whose autotuning made the simulate stage's compile 1.2 s
# longer, are off in every stage: programs.compiler_options.)
step autotune 50 "mcrisk run 1e8 --no-scenarios, no cache, autotuning off" \
  bash -c "coldlog autotune0 XLA_FLAGS=--xla_gpu_autotune_level=0"

# 4. The same as a stage table (benchmarks/bench.py: a fresh process each, peak RSS) ...
step bench 60 "bench 1e8 --no-scenarios" \
  python3 benchmarks/bench.py --study $S --sizes $N --no-scenarios --numpy-up-to 0 --json "$RES/gpu-1e8.json"
# ... and with a warm compilation cache (the second of two runs).
export MCRISK_CACHE_DIR=/tmp/xla-cache
step fill 40 "fill the compilation cache" python3 -m mcrisk run $S --scenarios $N --no-scenarios --no-stress --out /tmp/r-fill -q --force
step warm 30 "mcrisk run 1e8 --no-scenarios, warm compilation cache" bash -c \
  "time mc run $S --scenarios $N --no-scenarios --no-stress --out /tmp/r-warm -q --force \
   && cp /tmp/r-warm/manifest.json $RES/gpu-1e8-cli-warm.json"
export MCRISK_CACHE_DIR=off

# 5. Writing: 1e7 scenarios x 3 systems to Parquet against a plain multi-threaded pyarrow write
# of the same table; then the NumPy implementation of the same model against mcrisk at 1e5.
# (the median of 3 pairs of runs without and with rows: one pair varies by a few tenths of a second)
step write 120 "write 1e7 scenarios against plain pyarrow" python3 benchmarks/write.py --study $S --scenarios ${GPU_WRITE_N:-1e7} \
  --threads $(nproc) --repeat ${GPU_WRITE_REPEAT:-3} --json "$RES/gpu-write.json"
step numpy 75 "numpy against mcrisk at 1e5" \
  python3 benchmarks/bench.py --study $S --sizes 1e5 --numpy-up-to 1e5 --json "$RES/gpu-numpy.json"

# 6. The bytes each simulate variant moves, counted from the programs compiled for this card's
# kind, to set against the times of step 1; then the default study as it stands (three stresses,
# each 1e8 more scenarios) with the warm cache; then the optimized HLO of every stage.
step traffic 75 "traffic: bytes and compile time of every program" \
  python3 benchmarks/traffic.py --study $S --unroll 4 8 --stages --parts --json "$RES/gpu-traffic.json"
export MCRISK_CACHE_DIR=/tmp/xla-cache
step stress 60 "mcrisk run 1e8 with the study's stresses, warm cache" bash -c \
  "time mc run $S --scenarios $N --no-scenarios --out /tmp/r-stress -q --force"
export MCRISK_CACHE_DIR=off
# 7. Where a run's device time goes, program by program and kernel by kernel (JAX's profiler).
step profile 60 "profile of a 1e7 run" python3 benchmarks/profile.py --study $S --scenarios ${GPU_PROFILE_N:-1e7} --json "$RES/gpu-profile.json"
step hlo 45 "optimized HLO of each stage" env XLA_FLAGS="--xla_dump_to=/tmp/dump --xla_dump_hlo_as_text" \
  python3 benchmarks/kernels.py --study $S --chunk $C --unroll 4 --repeat 1 > /dev/null
tar czf "$OUT/gpu-hlo.tgz" -C /tmp/dump $(cd /tmp/dump 2>/dev/null && ls | grep after_optimizations.txt) 2>/dev/null
ls -la "$OUT"
echo "## done at ${SECONDS} s"
