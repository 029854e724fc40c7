// A summarizer written outside the library (examples/04_custom_policy.cpp composes it; tests/custom_policy_test.cpp
// checks it against a naive reference). It needs only skv's public headers: the `summarizer` concept of
// <skv/concepts.hpp> asks for `vectors`, `summarize` and `score`, nothing else.
#pragma once

#include <skv/concepts.hpp>
#include <skv/numeric.hpp>

namespace my_policies {

//! Two vectors per segment: the mean key (SentenceKV's semantic vector) and the segment's largest-norm key, so a
//! long sentence whose one salient token is averaged away in the mean still ranks by that token. A segment's score
//! is, per query head, the larger of the two dot products, summed over the KV head's query group.
struct mean_and_peak_summarizer {
  static constexpr int vectors = 2; // [mean; peak], each head_dim values

  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow key, int count, int dim, T* out) {
    int peak = 0;
    float best = -1.f;
    for (int i = 0; i < count; ++i) {
      float norm = 0.f;
      for (int d = 0; d < dim; ++d) norm += skv::to_float(key(i)[d]) * skv::to_float(key(i)[d]);
      if (norm > best) best = norm, peak = i;
    }
    for (int d = 0; d < dim; ++d) {
      float sum = 0.f;
      for (int i = 0; i < count; ++i) sum += skv::to_float(key(i)[d]);
      out[d] = skv::from_float<T>(sum / float(count));
      out[dim + d] = key(peak)[d];
    }
  }

  template <class T>
  SKV_HOST_DEVICE static float score(const float* q, int group, int dim, const T* summary) {
    float total = 0.f;
    for (int g = 0; g < group; ++g) {
      float mean = 0.f, peak = 0.f;
      for (int d = 0; d < dim; ++d) {
        mean += q[g * dim + d] * skv::to_float(summary[d]);
        peak += q[g * dim + d] * skv::to_float(summary[dim + d]);
      }
      total += mean > peak ? mean : peak;
    }
    return total;
  }
};
static_assert(skv::summarizer<mean_and_peak_summarizer>);

} // namespace my_policies
