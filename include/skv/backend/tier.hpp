//! @file backend/tier.hpp
//! The two memory tiers and the one way library code launches per-element work.
//!
//! fast tier = Thrust's device system (GPU memory on CUDA, a separate heap allocation on the CPU backends);
//! slow tier = host memory (pinned, hence device-addressable over UVA, on CUDA). On every backend the tiers are
//! distinct allocations and moving data between them is a real copy, so the ledger means the same thing everywhere.
#pragma once

#include <skv/config.hpp>

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/host_vector.h>
#include <thrust/iterator/counting_iterator.h>

#if defined(SKV_BACKEND_CUDA)
#  include <thrust/mr/allocator.h>
#  include <thrust/system/cuda/memory_resource.h>
#endif

#include <cstddef>
#include <cstdint>

SKV_NAMESPACE_BEGIN

//! Where bytes live.
enum class tier { fast, slow };

//! A vector on the fast tier.
template <class T>
using fast_vector = thrust::device_vector<T>;

#if defined(SKV_BACKEND_CUDA)
//! A vector on the slow tier: pinned host memory, readable by kernels over UVA (zero-copy).
template <class T>
using slow_vector = thrust::host_vector<
    T, thrust::mr::stateless_resource_allocator<T, thrust::system::cuda::universal_host_pinned_memory_resource>>;
#else
//! A vector on the slow tier: ordinary host memory.
template <class T>
using slow_vector = thrust::host_vector<T>;
#endif

//! The vector type of tier `Tier`.
template <class T, tier Tier>
using tier_vector = std::conditional_t<Tier == tier::fast, fast_vector<T>, slow_vector<T>>;

//! Raw pointer to a tier vector's storage, usable inside `SKV_HOST_DEVICE` functors on either tier.
template <class Vector>
auto raw(Vector& v) {
  return thrust::raw_pointer_cast(v.data());
}
template <class Vector>
auto raw(const Vector& v) {
  return thrust::raw_pointer_cast(v.data());
}

//! Bytes a vector holds allocated (its capacity), which is what residency costs.
template <class Vector>
std::size_t allocated_bytes(const Vector& v) {
  return v.capacity() * sizeof(typename Vector::value_type);
}

//! `v.resize(n)`, except that an empty vector is replaced by a fresh one of size `n`: Thrust's resize of an empty
//! vector copies its (empty) old range through a null iterator, which UBSan rightly reports.
template <class Vector>
void resize(Vector& v, std::size_t n) {
  if (v.empty()) Vector(n).swap(v);
  else v.resize(n);
}

//! Release a vector's memory for real (shrink to zero capacity).
template <class Vector>
void release(Vector& v) {
  Vector().swap(v);
}

namespace detail {
//! Runs `f(i)` for i in [0, n) on the device system: the single launch point for per-element functors,
//! so the CPU backends execute exactly the code the GPU runs.
template <class F>
void parallel_for(std::int64_t n, F f) {
  if (n <= 0) return;
  thrust::for_each_n(thrust::device, thrust::counting_iterator<std::int64_t>(0), n, f);
}
} // namespace detail

SKV_NAMESPACE_END
