#!/usr/bin/env bash
# Builds the libFuzzer target skv-fuzz (clang, ASan + UBSan, CPP backend) in build-fuzz and runs it single-process
# for the given time on a fresh copy of the seed corpus (tests/fuzz/corpus -> build-fuzz/corpus). With
# SKV_FUZZ_KEEP_CORPUS=1 the working corpus is kept from the previous run instead, so coverage accumulates (libFuzzer
# first replays all of it, which can take longer than the time given).
#
#   bash scripts/fuzz.sh [seconds=60] [extra libFuzzer args...]
#   bash scripts/fuzz.sh 600 -seed=1           # ten minutes, fixed seed
#   bash scripts/fuzz.sh 0                      # build only
#   ./build-fuzz/bin/skv-fuzz <crash-file>      # replay one input (SKV_FUZZ_VERBOSE=1 prints every call)
#
# Exits non-zero when the fuzzer finds a mismatch or a sanitizer error; the input is saved under build-fuzz/artifacts/.
# Installs nothing: needs clang++ with libFuzzer (scripts/install-deps.sh installs `clang`). SKV_FUZZ_CXX picks
# another clang++, SKV_FUZZ_JOBS the build parallelism (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ $# -gt 0 ]] && shift
cxx=${SKV_FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: '$cxx' not found. libFuzzer needs clang: run scripts/install-deps.sh (installs clang)," \
       "or set SKV_FUZZ_CXX to a clang++." >&2
  exit 2
fi

cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSKV_BUILD_FUZZ=ON \
  -DSKV_BUILD_TESTS=OFF -DSKV_BUILD_EXAMPLES=OFF -DSKV_BUILD_BENCH=OFF -DSKV_BUILD_TOOLS=OFF -DSKV_CUDA=OFF \
  -DSKV_CPU_BACKENDS=CPP >/dev/null
cmake --build build-fuzz --target skv-fuzz -j"${SKV_FUZZ_JOBS:-2}"
[[ $seconds == 0 ]] && exit 0

[[ -n ${SKV_FUZZ_KEEP_CORPUS:-} ]] || rm -rf build-fuzz/corpus
mkdir -p build-fuzz/corpus build-fuzz/artifacts
for seed in tests/fuzz/corpus/*; do
  [[ -e build-fuzz/corpus/${seed##*/} ]] || cp "$seed" build-fuzz/corpus/
done
set +e
./build-fuzz/bin/skv-fuzz build-fuzz/corpus -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 \
  -artifact_prefix=build-fuzz/artifacts/ "$@"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "fuzz.sh: skv-fuzz failed (exit $rc); reproducer(s):" >&2
  ls -1t build-fuzz/artifacts/ 2>/dev/null | head -5 | sed 's|^|  build-fuzz/artifacts/|' >&2
  echo "replay with: SKV_FUZZ_VERBOSE=1 ./build-fuzz/bin/skv-fuzz <file>" >&2
fi
exit $rc
