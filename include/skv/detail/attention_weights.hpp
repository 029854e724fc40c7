//! @file detail/attention_weights.hpp
//! The softmax weight each selected token receives, summed over the query heads of its KV group: what H2O
//! (arXiv 2306.14048 §3) accumulates to find heavy hitters. One pair per work item (budgets are small): per query
//! head, one pass computes the logits, a second normalises them.
#pragma once

#include <skv/detail/dot.hpp>

#include <cmath>
#include <cstdint>

SKV_NAMESPACE_BEGIN
namespace detail {

template <class T, int D>
struct attention_weights {
  const float* q;            //!< [batch, q_heads, D], pre-scaled
  const T* const* k_all;     //!< [pairs] rows read when all[p]
  const T* const* k_sel;     //!< [pairs] base of the rows named by `slots` otherwise
  const std::int32_t* slots; //!< [pairs, slot_stride]
  const std::int32_t* count;
  const std::uint8_t* all;
  std::int64_t slot_stride;
  float* out;    //!< [pairs, out_stride] weights
  float* logits; //!< [pairs, out_stride] scratch
  std::int64_t out_stride;
  int group;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const int n = count[p];
    float* o = out + p * out_stride;
    float* s = logits + p * out_stride;
    for (int j = 0; j < n; ++j) o[j] = 0.f;
    for (int g = 0; g < group; ++g) {
      const float* qg = q + (p * group + g) * D;
      float m = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const T* k = all[p] ? k_all[p] + std::int64_t(j) * D : k_sel[p] + std::int64_t(slots[p * slot_stride + j]) * D;
        const float x = dot(qg, k, D);
        s[j] = x;
        m = x > m ? x : m;
      }
      float l = 0.f;
      for (int j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - m);
        l += s[j];
      }
      const float inv = 1.f / l;
      for (int j = 0; j < n; ++j) o[j] += s[j] * inv;
    }
  }
};

} // namespace detail
SKV_NAMESPACE_END
