//! @file backend/stream.hpp
//! Streams, the one launch point for per-element work, and copies between tiers.
//!
//! On CUDA every operation of a decode step is issued on the engine's `cudaStream_t` without waiting on the host
//! (Thrust's `par_nosync`), so a step can be captured in a CUDA graph; on the CPU backends the stream is a
//! `const skv::executor*` saying which threads run the call (null: the backend's default; backend/executor.hpp),
//! and work runs to completion before the call returns.
#pragma once

#include <skv/backend/executor.hpp>
#include <skv/config.hpp>

#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(SKV_BACKEND_CUDA)
#  include <cuda_runtime_api.h>
#endif

SKV_NAMESPACE_BEGIN

#if defined(SKV_BACKEND_CUDA)
//! The engine's stream: `cudaStream_t` on CUDA (0 = the legacy default stream).
using stream_t = cudaStream_t;
#else
//! On the CPU backends: the executor of the call (null: the backend's default threads); work completes before each
//! call returns.
using stream_t = const executor*;
#endif

namespace detail {
//! The Thrust execution policy that runs on `s` without a host synchronization afterwards.
inline auto on(stream_t s) {
#if defined(SKV_BACKEND_CUDA)
  return thrust::cuda::par_nosync.on(s);
#else
  (void)s;
  return thrust::device;
#endif
}

#if defined(SKV_BACKEND_CUDA)
inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("skv: ") + what + ": " + cudaGetErrorString(e));
}
#endif

} // namespace detail

//! Copies `bytes` between any two tiers (or engine memory), ordered on `s`. On CUDA the host side must be pinned
//! memory for the copy not to wait on the host.
inline void copy_bytes(void* dst, const void* src, std::size_t bytes, stream_t s) {
  if (bytes == 0) return;
#if defined(SKV_BACKEND_CUDA)
  detail::check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s), "cudaMemcpyAsync");
#else
  (void)s;
  std::memcpy(dst, src, bytes);
#endif
}

//! Waits until the work issued on `s` has finished (a host synchronization; a no-op on the CPU backends).
inline void synchronize(stream_t s) {
#if defined(SKV_BACKEND_CUDA)
  detail::check_cuda(cudaStreamSynchronize(s), "cudaStreamSynchronize");
#else
  (void)s;
#endif
}
//! Runs `f(i)` for i in [0, n) on the device system, ordered on `s`: the single launch point for per-element
//! functors, so the CPU backends execute exactly the code the GPU runs. `F` is a `SKV_HOST_DEVICE` functor.
template <class F>
void parallel_for(std::int64_t n, F f, stream_t s = {}) {
  if (n <= 0) return;
#if !defined(SKV_BACKEND_CUDA)
  if (s) {
    detail::run_on(*s, n, f);
    return;
  }
#endif
  thrust::for_each_n(detail::on(s), thrust::counting_iterator<std::int64_t>(0), n, f);
}

SKV_NAMESPACE_END
