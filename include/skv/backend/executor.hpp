//! @file backend/executor.hpp
//! Where the CPU backends run a call's parallel work.
//!
//! On the CPU backends the `stream` argument of every `kv_cache` call is a `const skv::executor*`. Null (the
//! default) runs on the backend's own threads: OpenMP's pool on the OMP backend, the calling thread on CPP. An
//! executor runs the call's work with a thread count of its own, or on a thread pool the engine already has — the
//! way to share the cores with an engine's threads instead of adding a second pool (OpenMP's waiting threads spin).
//! skv-bench's `neighbour_step` rows measure the step beside a busy pool. On CUDA the stream is `cudaStream_t` and
//! this is unused.
#pragma once

#include <skv/config.hpp>

#include <cstdint>

SKV_NAMESPACE_BEGIN

//! How one call's parallel work runs on the CPU (see the file comment). Only the fields below; copyable.
struct executor {
  //! One task: runs the work items [begin, end).
  using task_fn = void (*)(void* work, std::int64_t begin, std::int64_t end);
  //! The engine's parallel-for: must call `task(work, b, e)` over disjoint ranges covering [0, n), on any threads
  //! (the caller's included), and return when all have returned. Null: use `threads`.
  void (*parallel_for)(void* pool, std::int64_t n, task_fn task, void* work) = nullptr;
  void* pool = nullptr; //!< passed to `parallel_for` as is
  //! Without `parallel_for`: OpenMP threads for this call (OMP backend; 0 = OpenMP's default), 1 = the calling
  //! thread only.
  int threads = 0;
};

namespace detail {
//! Runs `f(i)` for i in [0, n) as `e` says.
template <class F>
void run_on(const executor& e, std::int64_t n, F& f) {
  if (e.parallel_for) {
    e.parallel_for(
        e.pool, n,
        [](void* work, std::int64_t b, std::int64_t end) {
          F& g = *static_cast<F*>(work);
          for (std::int64_t i = b; i < end; ++i) g(i);
        },
        &f);
    return;
  }
#if defined(SKV_BACKEND_OMP) && defined(_OPENMP)
  if (e.threads != 1) {
    if (e.threads > 0) {
#  pragma omp parallel for schedule(static) num_threads(e.threads)
      for (std::int64_t i = 0; i < n; ++i) f(i);
    } else {
#  pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) f(i);
    }
    return;
  }
#endif
  for (std::int64_t i = 0; i < n; ++i) f(i);
}
} // namespace detail

SKV_NAMESPACE_END
