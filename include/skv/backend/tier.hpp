//! @file backend/tier.hpp
//! Vectors on the two memory tiers, allocated from a tier's memory resource.
//!
//! fast tier = Thrust's device system (GPU memory on CUDA, a separate heap allocation on the CPU backends);
//! slow tier = host memory (pinned on CUDA, hence device-addressable over UVA). On every backend the tiers are
//! distinct allocations and moving data between them is a real copy, so the ledger means the same thing everywhere.
#pragma once

#include <skv/backend/memory_resource.hpp>

#include <thrust/device_ptr.h>
#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

SKV_NAMESPACE_BEGIN

//! A Thrust allocator that draws from a `memory_resource` of tier `Tier` (the tier's default one when constructed
//! without a resource). Fast-tier pointers are `thrust::device_ptr`, so Thrust dispatches to the device system.
template <class T, tier Tier>
class tier_allocator {
public:
  using value_type = T;
  using pointer = std::conditional_t<Tier == tier::fast, thrust::device_ptr<T>, T*>;
  using const_pointer = std::conditional_t<Tier == tier::fast, thrust::device_ptr<const T>, const T*>;
  using reference = std::conditional_t<Tier == tier::fast, thrust::device_reference<T>, T&>;
  using const_reference = std::conditional_t<Tier == tier::fast, thrust::device_reference<const T>, const T&>;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  template <class U>
  struct rebind {
    using other = tier_allocator<U, Tier>;
  };

  tier_allocator() noexcept : mr_(default_resource(Tier)) {}
  tier_allocator(memory_resource* mr) noexcept : mr_(mr != nullptr ? mr : default_resource(Tier)) {} // NOLINT
  template <class U>
  tier_allocator(const tier_allocator<U, Tier>& other) noexcept : mr_(other.resource()) {} // NOLINT

  pointer allocate(size_type n) {
    return pointer(static_cast<T*>(mr_->allocate(n * sizeof(T), alignof(T) > 64 ? alignof(T) : 64)));
  }
  void deallocate(pointer p, size_type n) noexcept {
    mr_->deallocate(thrust::raw_pointer_cast(p), n * sizeof(T), alignof(T) > 64 ? alignof(T) : 64);
  }
  memory_resource* resource() const noexcept { return mr_; }
  friend bool operator==(const tier_allocator& a, const tier_allocator& b) noexcept { return a.mr_ == b.mr_; }
  friend bool operator!=(const tier_allocator& a, const tier_allocator& b) noexcept { return a.mr_ != b.mr_; }

private:
  memory_resource* mr_;
};

//! The vector type of tier `Tier`.
template <class T, tier Tier>
using tier_vector = std::conditional_t<Tier == tier::fast, thrust::device_vector<T, tier_allocator<T, tier::fast>>,
                                       thrust::host_vector<T, tier_allocator<T, tier::slow>>>;
//! A vector on the fast tier.
template <class T>
using fast_vector = tier_vector<T, tier::fast>;
//! A vector on the slow tier.
template <class T>
using slow_vector = tier_vector<T, tier::slow>;

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

//! Makes `v` an empty vector drawing from `mr` (its memory, if any, is released).
template <class Vector>
void bind(Vector& v, memory_resource* mr) {
  v = Vector(typename Vector::allocator_type(mr));
}

//! `v.resize(n)` that keeps `v`'s resource, except that an empty vector is replaced by a fresh one of size `n`:
//! Thrust's resize of an empty vector copies its (empty) old range through a null iterator, which UBSan reports.
template <class Vector>
void resize(Vector& v, std::size_t n) {
  if (v.size() == n) return;
  if (v.empty())
    Vector(n, typename Vector::value_type(), v.get_allocator()).swap(v);
  else
    v.resize(n);
}

//! Grows `v` to at least `n` elements (never shrinks): what buffers sized by an upper bound use.
template <class Vector>
void ensure_size(Vector& v, std::size_t n) {
  if (v.size() < n) resize(v, n);
}

//! Releases a vector's memory for real (shrink to zero capacity), keeping its resource.
template <class Vector>
void release(Vector& v) {
  Vector(v.get_allocator()).swap(v);
}

SKV_NAMESPACE_END
