//! @file detail/dot.hpp
//! Dot products written so that a compiler vectorizes them without -ffast-math: 16 lane-wise partial sums (no
//! floating-point reduction across the vectorized loop), added at the end. Same code on the GPU.
#pragma once

#include <skv/numeric.hpp>

SKV_NAMESPACE_BEGIN
namespace detail {

inline constexpr int dot_lanes = 16;

//! sum_d a[d] * b[d] for `n` elements (a multiple of 16 runs fully in lanes; a remainder is added after).
template <class T>
SKV_HOST_DEVICE SKV_FORCEINLINE float dot(const float* a, const T* b, int n) {
  float lane[dot_lanes] = {};
  const int full = n - n % dot_lanes;
  for (int d = 0; d < full; d += dot_lanes)
    for (int l = 0; l < dot_lanes; ++l) lane[l] += a[d + l] * to_float(b[d + l]);
  float s = 0.f;
  for (int l = 0; l < dot_lanes; ++l) s += lane[l];
  for (int d = full; d < n; ++d) s += a[d] * to_float(b[d]);
  return s;
}

} // namespace detail
SKV_NAMESPACE_END
