//! @file summarizer/mean_key_summarizer.hpp
//! SentenceKV's semantic vector (arXiv 2504.00970 §3.2): the mean of a segment's retained post-RoPE keys, scored by a
//! plain dot product with the decode query, summed over the query heads of the KV group.
#pragma once

#include <skv/detail/dot.hpp>

SKV_NAMESPACE_BEGIN

//! One vector: the mean of the segment's retained keys; score = q . mean summed over the group.
struct mean_key_summarizer {
  static constexpr int vectors = 1;
  //! score(q_1..q_G) = score(q_1 + ... + q_G): callers may pre-sum the group's queries and pass group = 1.
  static constexpr bool linear_in_query = true;
  //! score(q, 1, dim, mean) is q . mean: the selector's CPU kernel may score 16 (AVX-512) or 8 (AVX2) rows at a time
  //! (detail/simd.hpp).
  static constexpr bool dot_score = true;

  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow key, int count, int dim, T* out) {
    const float inv = 1.f / float(count);
    for (int d = 0; d < dim; ++d) {
      float s = 0.f;
      for (int i = 0; i < count; ++i) s += to_float(key(i)[d]);
      out[d] = from_float<T>(s * inv);
    }
  }

  //! sum_g q_g . mean  =  (sum_g q_g) . mean.
  template <class T>
  SKV_HOST_DEVICE static float score(const float* q, int group, int dim, const T* mean) {
    float s = 0.f;
    for (int g = 0; g < group; ++g) s += detail::dot(q + g * dim, mean, dim);
    return s;
  }
};

//! The mean key with an int8 sketch kept beside it (`sketched_summarizer`): the same summaries and scores, one byte
//! per dimension and four floats more per segment in the fast tier, so that the selector reads the full-precision
//! mean only for segments whose sketch bound can reach the budget (detail/sketch.hpp). The selection is identical.
struct sketched_mean_key_summarizer : mean_key_summarizer {
  static constexpr bool int8_sketch = true;
};

//! The mean key with a low-rank projection kept beside it (`projected_summarizer`): the same summaries and scores,
//! plus head_dim / Divisor int8 codes and a scale per segment and a rank x head_dim float basis per (sequence, KV
//! head) in the fast tier.
//! Once a pair holds `sketch_rows` closed segments, `segment_topk` ranks them by the projected score and scores
//! exactly only those that fill `prescreen` times the budget -- an *approximate* pre-screen: a segment the projection
//! misranks below that line is not selected, however high its exact score (detail/projection.hpp; its recall of the
//! exact selection is measured in docs/policies.md). The basis is the dominant subspace of the prompt's summaries,
//! fixed at prefill: a pair whose prompt gave fewer than 4 x rank summaries always scores exactly.
template <int Divisor = 4>
struct projected_mean_key_summarizer : mean_key_summarizer {
  static_assert(Divisor >= 1, "projected_mean_key_summarizer: Divisor must be >= 1");
  static constexpr int projection_divisor = Divisor;
};

SKV_NAMESPACE_END
