#!/usr/bin/env bash
# make gpu-check: on a machine with CuPy and a CUDA GPU, run the gpu-marked tests and the GPU
# benchmark in one go, in under 5 minutes, installing nothing (no network needed).
# Writes benchmarks/results/gpu-tests.txt, gpu.json, gpu.md, gpu-profile.txt and, when time allows,
# gpu-tf32.{json,md}
# (git ignores results/: quote the figures in docs/benchmarks.md).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.
export HYPOTHESIS_PROFILE=gpu
PY=${PYTHON:-python3}
OUT=benchmarks/results
mkdir -p "$OUT"
start=$(date +%s)

if ! $PY -c "from byol_ref.backend import cupy_status; ok, why = cupy_status(); print(why); raise SystemExit(0 if ok else 1)"; then
    echo "gpu-check: no usable CuPy + GPU here; nothing to do" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu-device.txt"

# 1. the gpu tests (kernels compile on first use: allow them ~2.5 minutes)
timeout 150 $PY -m pytest -m gpu -rs -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.txt"
tests_rc=${PIPESTATUS[0]}

# 2. the GPU benchmark: wide and paper_head at batch 256 and 4096, strict float32 matmuls
timeout 110 $PY benchmarks/bench_step.py --backend cupy --configs wide,paper_head --batch 256,4096 \
    --steps 20 --warmup 3 --out "$OUT/gpu" 2>&1 | tee "$OUT/gpu-bench.txt"
bench_rc=${PIPESTATUS[0]}

# 3. where a small-batch step's CPU time goes (it is bound by the CPU that issues it): cProfile of 20 steps
timeout 60 $PY benchmarks/profile_step.py --backend cupy --config wide --batch 256 --top 40 \
    --out "$OUT/gpu-profile.txt" > /dev/null 2>&1 || echo "gpu-check: the profile did not finish" >&2
head -1 "$OUT/gpu-profile.txt" 2>/dev/null

# 4. the same with TF32 matmuls (an explicit option), if at least 40 s of the 5 minutes remain
left=$(( 290 - ($(date +%s) - start) ))
if [ "$left" -gt 40 ]; then
    timeout "$left" $PY benchmarks/bench_step.py --backend cupy --configs wide,paper_head --batch 256,4096 \
        --steps 20 --warmup 3 --tf32 --no-memory --out "$OUT/gpu-tf32" 2>&1 | tee "$OUT/gpu-tf32-bench.txt"
fi

echo "gpu-check: tests rc=$tests_rc, benchmark rc=$bench_rc, $(( $(date +%s) - start )) s"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
