//! @file detail/validate.hpp
//! Input checks shared by the cache's operations.
#pragma once

#include <skv/backend/tier.hpp>
#include <skv/error.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <thrust/transform_reduce.h>

#include <cmath>
#include <string>

SKV_NAMESPACE_BEGIN
namespace detail {

//! The engine's stated head geometry must be the cache's.
inline void check_heads(int q_heads, int kv_heads, int head_dim, const model_shape& s, const char* where) {
  require(kv_heads == s.num_kv_heads, where, "num_kv_heads", kv_heads,
          std::to_string(s.num_kv_heads) + " (the cache's model_shape)");
  require(q_heads == s.num_q_heads, where, "num_q_heads", q_heads,
          std::to_string(s.num_q_heads) + " (the cache's model_shape)");
  require(head_dim == s.head_dim, where, "head_dim", head_dim,
          std::to_string(s.head_dim) + " (the cache's model_shape)");
}

template <class Src>
struct non_finite_count {
  tensor_view<const Src> x;
  int heads, dim;
  SKV_HOST_DEVICE int operator()(std::int64_t i) const {
    const std::int64_t row = i / (std::int64_t(heads) * dim), h = (i / dim) % heads, d = i % dim;
    const float f = to_float(x.at(row, h)[d]);
    return (f - f) == (f - f) ? 0 : 1; // NaN or Inf make f - f NaN
  }
};

//! Throws when any of the [rows, heads, dim] elements of `x` is NaN or infinite.
template <class Src>
void check_finite(tensor_view<const Src> x, std::int64_t rows, int heads, int dim, const char* where,
                  const char* name) {
  const std::int64_t n = rows * heads * dim;
  const int bad = thrust::transform_reduce(thrust::device, thrust::counting_iterator<std::int64_t>(0),
                                           thrust::counting_iterator<std::int64_t>(n),
                                           non_finite_count<Src>{x, heads, dim}, 0, thrust::plus<int>());
  if (bad > 0)
    throw_invalid(where, name, std::to_string(bad) + " non-finite values", "finite values only (check_values is on)");
}

} // namespace detail
SKV_NAMESPACE_END
