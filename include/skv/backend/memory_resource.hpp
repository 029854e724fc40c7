//! @file backend/memory_resource.hpp
//! Where the cache's memory comes from: one `std::pmr::memory_resource` per tier.
//!
//! Every buffer skv allocates — token K/V, summaries, selection and fetch buffers, policy state, scratch — comes from
//! the memory resource of its tier: the cache's `options.fast_memory` / `options.slow_memory`, or the process-wide
//! default of that tier when those are null. An engine that manages its own memory passes its resources (a counting
//! one, a pool, or a `std::pmr::monotonic_buffer_resource` over a workspace it allocated); after
//! `kv_cache::reserve()` the decode path allocates nothing from them.
//!
//! On CUDA the fast tier's memory is device memory and the slow tier's is pinned host memory: a resource for the fast
//! tier must hand out device pointers and never dereference them (`monotonic_buffer_resource` over a device buffer
//! with `null_memory_resource()` upstream qualifies; pool resources that keep free lists inside blocks do not).
#pragma once

#include <skv/config.hpp>

#include <cstddef>
#include <memory_resource>
#include <new>

#if defined(SKV_BACKEND_CUDA)
#  include <cuda_runtime_api.h>
#endif

SKV_NAMESPACE_BEGIN

//! Where bytes live: the fast tier is Thrust's device system (GPU memory on CUDA), the slow tier is host memory
//! (pinned on CUDA, so kernels read it over UVA).
enum class tier { fast, slow };

//! The resource type of both tiers.
using memory_resource = std::pmr::memory_resource;

namespace detail {
inline constexpr std::size_t min_alignment = 64; //!< every allocation is at least cache-line (and AVX-512) aligned

//! The built-in resource of a tier: aligned `operator new` on the CPU backends; `cudaMalloc` (fast) and
//! `cudaMallocHost` (slow) on CUDA.
template <tier Tier>
class builtin_resource final : public memory_resource {
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    const std::size_t a = alignment < min_alignment ? min_alignment : alignment;
#if defined(SKV_BACKEND_CUDA)
    (void)a;
    void* p = nullptr;
    const cudaError_t e = Tier == tier::fast ? cudaMalloc(&p, bytes) : cudaMallocHost(&p, bytes);
    if (e != cudaSuccess) throw std::bad_alloc();
    return p;
#else
    return ::operator new(bytes, std::align_val_t(a));
#endif
  }
  void do_deallocate(void* p, std::size_t, std::size_t alignment) override {
    const std::size_t a = alignment < min_alignment ? min_alignment : alignment;
#if defined(SKV_BACKEND_CUDA)
    (void)a;
    if (Tier == tier::fast)
      cudaFree(p);
    else
      cudaFreeHost(p);
#else
    ::operator delete(p, std::align_val_t(a));
#endif
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }
};

template <tier Tier>
memory_resource* builtin() noexcept {
  static builtin_resource<Tier> r;
  return &r;
}
template <tier Tier>
memory_resource*& default_slot() noexcept {
  static memory_resource* current = builtin<Tier>();
  return current;
}
} // namespace detail

//! The process-wide default resource of tier `t` (used where a cache's options give none).
inline memory_resource* default_resource(tier t) noexcept {
  return t == tier::fast ? detail::default_slot<tier::fast>() : detail::default_slot<tier::slow>();
}

//! Replaces the default resource of tier `t` (null restores the built-in one); returns the previous one. Caches
//! already constructed keep the resources they were built with.
inline memory_resource* set_default_resource(tier t, memory_resource* r) noexcept {
  auto& slot = t == tier::fast ? detail::default_slot<tier::fast>() : detail::default_slot<tier::slow>();
  memory_resource* previous = slot;
  slot = r != nullptr ? r : (t == tier::fast ? detail::builtin<tier::fast>() : detail::builtin<tier::slow>());
  return previous;
}

//! The resources a cache (and each of its policies) allocates from.
struct tier_resources {
  memory_resource* fast = nullptr; //!< null: `default_resource(tier::fast)` at the time of use
  memory_resource* slow = nullptr; //!< null: `default_resource(tier::slow)`
  memory_resource* of(tier t) const {
    memory_resource* r = t == tier::fast ? fast : slow;
    return r != nullptr ? r : default_resource(t);
  }
};

SKV_NAMESPACE_END
