#pragma once
//! \file blas_core.hpp
//! OpenBLAS (Debian's 0.3.21, DYNAMIC_ARCH) does not recognise some current x86 CPUs — this project's AVX-512 Xeon
//! among them — and falls back to its SSE3 "Prescott" kernels: prompt processing then runs 2.4x slower (a 4,000-token
//! SmolLM2 prefill: 45 s instead of 19 s on 2 cores). OpenBLAS picks its kernels when the library loads, so the
//! only fix from inside a program is to set OPENBLAS_CORETYPE and start again. The tools call this first thing in
//! main(); a user's own OPENBLAS_CORETYPE is always respected.

#include <cblas.h>
#include <cstdlib>
#include <string_view>
#include <unistd.h>

namespace skv::llama {

//! If OPENBLAS_CORETYPE is unset, OpenBLAS chose its generic Prescott kernels and the CPU has AVX-512 (AVX2), sets
//! OPENBLAS_CORETYPE=SkylakeX (Haswell) and re-executes the program with the same arguments. Returns (doing nothing)
//! otherwise, or if the re-execution fails.
inline void use_native_blas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const char* core = openblas_get_corename();
  if (core == nullptr || std::string_view(core) != "Prescott") return;
  __builtin_cpu_init();
  const char* want = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? "SkylakeX"
                     : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")       ? "Haswell"
                                                                                             : nullptr;
  if (want == nullptr) return;
  if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
  execv("/proc/self/exe", argv); // returns only on failure: carry on with the generic kernels
  unsetenv("OPENBLAS_CORETYPE");
}

} // namespace skv::llama
