//! @file attention/attention_weights.hpp
//! The softmax weight each selected token receives, summed over the query heads of its KV group: what H2O
//! (arXiv 2306.14048 §3) accumulates to find heavy hitters. One pair per work item; budgets are small.
#pragma once

#include <skv/numeric.hpp>

#include <cmath>
#include <cstdint>

SKV_NAMESPACE_BEGIN
namespace detail {

template <class T>
struct attention_weights {
  const float* q;            //!< [batch, q_heads, dim], pre-scaled
  const T* const* k_base;    //!< [pairs]
  const std::int32_t* slots; //!< [pairs, slot_stride]
  const std::int32_t* count;
  const std::uint8_t* all;
  std::int64_t slot_stride;
  float* out; //!< [pairs, out_stride]
  std::int64_t out_stride;
  int group, dim;
  SKV_HOST_DEVICE float logit(std::int64_t p, int g, int j) const {
    const std::int64_t row = all[p] ? j : slots[p * slot_stride + j];
    const T* k = k_base[p] + row * dim;
    const float* qg = q + (p * group + g) * dim;
    float s = 0.f;
    for (int d = 0; d < dim; ++d) s += qg[d] * to_float(k[d]);
    return s;
  }
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const int n = count[p];
    float* o = out + p * out_stride;
    for (int j = 0; j < n; ++j) o[j] = 0.f;
    for (int g = 0; g < group; ++g) {
      float m = -INFINITY, l = 0.f;
      for (int j = 0; j < n; ++j) {
        const float s = logit(p, g, j);
        if (s > m) {
          l = l * std::exp(m - s) + 1.f;
          m = s;
        } else {
          l += std::exp(s - m);
        }
      }
      for (int j = 0; j < n; ++j) o[j] += std::exp(logit(p, g, j) - m) / l;
    }
  }
};

} // namespace detail
SKV_NAMESPACE_END
