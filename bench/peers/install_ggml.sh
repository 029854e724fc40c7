#!/usr/bin/env bash
# Builds ggml (llama.cpp's tensor library) for this CPU by installing llama-cpp-python from PyPI, for the ggml peer
# (bench/peers/ggml_attention.py) and the llama.cpp end-to-end comparison (bench/peers/llama_cpp_decode.py).
# About 10 minutes on 2 cores. Nothing of ggml is kept in this repository.
set -euo pipefail
if python3 -c "import llama_cpp" 2>/dev/null; then
  echo "llama-cpp-python $(python3 -c 'import llama_cpp; print(llama_cpp.__version__)') already installed"
  exit 0
fi
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m pip install --no-cache-dir "llama-cpp-python${LLAMA_CPP_PYTHON_VERSION:+==$LLAMA_CPP_PYTHON_VERSION}"
