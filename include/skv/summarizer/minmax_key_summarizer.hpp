//! @file summarizer/minmax_key_summarizer.hpp
//! Quest's page bounds (arXiv 2406.10774 §3): element-wise minimum and maximum key of a segment. The score
//! sum_d max(q_d * max_d, q_d * min_d) is an upper bound of q . k over the segment, so no relevant token's
//! segment is ranked below its actual attention logit.
#pragma once

#include <skv/numeric.hpp>

SKV_NAMESPACE_BEGIN

//! Two vectors, the element-wise minimum and maximum key; score = sum_d max(q_d min_d, q_d max_d) over the group.
struct minmax_key_summarizer {
  static constexpr int vectors = 2; //!< [min; max]

  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow key, int count, int dim, T* out) {
    for (int d = 0; d < dim; ++d) {
      float lo = to_float(key(0)[d]), hi = lo;
      for (int i = 1; i < count; ++i) {
        const float x = to_float(key(i)[d]);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
      }
      out[d] = from_float<T>(lo);
      out[dim + d] = from_float<T>(hi);
    }
  }

  //! Summed over the group's query heads (skv selects per KV head).
  template <class T>
  SKV_HOST_DEVICE static float score(const float* q, int group, int dim, const T* bounds) {
    // 16 lane-wise partial sums so the loop vectorizes without reassociation (see detail/dot.hpp)
    float lane[16] = {}, s = 0.f;
    const int full = dim - dim % 16;
    for (int g = 0; g < group; ++g) {
      const float* qg = q + g * dim;
      for (int d = 0; d < full; d += 16)
        for (int l = 0; l < 16; ++l) {
          const float qd = qg[d + l], a = qd * to_float(bounds[d + l]), b = qd * to_float(bounds[dim + d + l]);
          lane[l] += a > b ? a : b;
        }
      for (int d = full; d < dim; ++d) {
        const float qd = qg[d], a = qd * to_float(bounds[d]), b = qd * to_float(bounds[dim + d]);
        s += a > b ? a : b;
      }
    }
    for (int l = 0; l < 16; ++l) s += lane[l];
    return s;
  }
};

SKV_NAMESPACE_END
