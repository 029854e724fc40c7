//! @file detail/selection_buffers.hpp
//! The storage behind a layer's `selection` (what the selector writes each step) and `retention_list` (what it keeps
//! at prefill and on eviction), owned by the cache and sized once.
#pragma once

#include <skv/policy.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

class selection_buffers {
public:
  explicit selection_buffers(const tier_resources& mem) {
    skv::bind(index_, mem.of(tier::fast));
    skv::bind(count_, mem.of(tier::fast));
    skv::bind(all_, mem.of(tier::fast));
  }
  void reserve(int max_pairs, std::int64_t capacity) {
    ensure_size(index_, std::size_t(max_pairs) * std::size_t(std::max<std::int64_t>(1, capacity)));
    ensure_size(count_, std::size_t(max_pairs));
    ensure_size(all_, std::size_t(max_pairs));
    bound_.reserve(max_pairs);
  }
  //! The selection of `pairs` pairs with index lists of `capacity` (grows the buffers only past a reservation).
  selection view(int pairs, std::int64_t capacity) {
    reserve(pairs, capacity);
    bound_.resize(pairs);
    pairs_ = pairs;
    return {capacity, raw(index_), raw(count_), raw(all_), bound_};
  }
  //! The last selection handed out (for attention, fetch and exports).
  selection current(std::int64_t capacity) {
    return {capacity, raw(index_), raw(count_), raw(all_), {bound_.data(), std::size_t(pairs_)}};
  }
  std::int64_t max_bound() const {
    std::int64_t m = 0;
    for (int p = 0; p < pairs_; ++p) m = std::max(m, bound_[p]);
    return m;
  }
  std::int64_t total_bound() const {
    std::int64_t n = 0;
    for (int p = 0; p < pairs_; ++p) n += bound_[p];
    return n;
  }
  std::size_t fast_bytes() const { return allocated_bytes(index_) + allocated_bytes(count_) + allocated_bytes(all_); }

  bool valid = false;   //!< a selection was made since the last append
  bool fetched = false; //!< the offloader fetched it

private:
  fast_vector<std::int32_t> index_, count_;
  fast_vector<std::uint8_t> all_;
  std::vector<std::int64_t> bound_;
  int pairs_ = 0;
};

class retention_buffers {
public:
  explicit retention_buffers(const tier_resources& mem) { skv::bind(index_, mem.of(tier::fast)); }
  void reserve(int max_pairs, std::int64_t stride) {
    ensure_size(index_, std::size_t(max_pairs) * std::size_t(std::max<std::int64_t>(1, stride)));
    length_.reserve(max_pairs);
  }
  retention_list list(int pairs, std::int64_t stride) {
    reserve(pairs, stride);
    length_.assign(pairs, 0);
    return {std::max<std::int64_t>(1, stride), raw(index_), length_};
  }
  std::size_t fast_bytes() const { return allocated_bytes(index_); }

private:
  fast_vector<std::int32_t> index_;
  std::vector<std::int64_t> length_;
};

} // namespace detail
SKV_NAMESPACE_END
