#!/usr/bin/env bash
# The device check (issue 7), for a machine with an NVIDIA GPU (H100/H200: sm_90), inside 8 minutes:
# configure and build the CUDA targets, run the CUDA test binary (the CPU suites, on the GPU), run
# compute-sanitizer on a short test, run the CUDA example, and the decode_step / prefill_policy / dense_attend
# benchmarks at 32K and 128K. Everything is logged to $OUT/run.log, benchmark JSON to $OUT/bench-cuda.json.
#   OUT=/tmp/gpu bash bench/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
status=0
step() { printf '\n=== %s (t=%ss) ===\n' "$*" "$SECONDS"; }
run() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }

step "device"
run nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
date -u
step "configure + build (sm_90)"
run cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSKV_CPU_BACKENDS=OMP -DSKV_BUILD_TOOLS=OFF -DSKV_BENCH_NATIVE=OFF
run cmake --build build-gpu -j"$(nproc)" --target skv_cuda_programs   # the three CUDA programs side by side
step "CUDA tests (same suites and references as the CPU backends)"
run timeout 150 build-gpu/bin/skv_tests_cuda
step "compute-sanitizer memcheck on a short test"
run timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/bin/skv_tests_cuda \
  -tc="streaming_llm keeps exactly*"
step "example"
run timeout 60 build-gpu/bin/05_cuda_decode
step "benchmarks: decode_step, prefill_policy, dense_attend at 32K / 128K"
if [ -x build-gpu/bin/skv-bench-cuda ]; then
  run timeout 200 build-gpu/bin/skv-bench-cuda \
    --benchmark_filter='^(decode_step|prefill_policy|dense_attend|attend|fetch)/.*/ctx:(32768|131072)/.*llama3_8b' \
    --benchmark_out="$OUT/bench-cuda.json" --benchmark_out_format=json --benchmark_min_time=0.2
fi
step "done, status $status"
exit $status
