//! Generated workloads with sentence structure, shared by the examples and the benchmarks.
//!
//! Keys of a sentence share a direction (its topic) plus noise, as post-RoPE keys of real text cluster by content;
//! a few "needle" sentences share one topic that the decode queries ask about. Token ids: a boundary id ends each
//! sentence, lengths drawn around a mean.
#pragma once

#include <skv/numeric.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace synthetic {

inline constexpr std::int32_t boundary_id = 13; //!< the token id that ends a sentence
inline constexpr std::int32_t vocab_size = 32000;

struct workload {
  int q_heads, kv_heads, dim;
  std::int64_t tokens;
  std::vector<std::int32_t> ids;         //!< [tokens]
  std::vector<std::int32_t> sentence_of; //!< [tokens] sentence index of each token
  std::vector<std::int32_t> needles;     //!< sentence indices that carry the needle topic
  std::vector<float> k, v, q;            //!< NHD [tokens, heads, dim]
  std::vector<float> needle_dir;         //!< [kv_heads, dim] the needle topic per KV head
  std::mt19937 rng;

  //! A decode token whose query (every head of a group) points at the needle topic, with noise.
  void decode_token(std::int32_t& id, std::vector<float>& kq, std::vector<float>& vq, std::vector<float>& qq,
                    bool ends_sentence) {
    std::normal_distribution<float> nd;
    const int G = q_heads / kv_heads;
    id = ends_sentence ? boundary_id : std::int32_t(100 + rng() % (vocab_size - 100));
    kq.resize(std::size_t(kv_heads) * dim);
    vq.resize(kq.size());
    qq.resize(std::size_t(q_heads) * dim);
    for (auto& x : kq) x = nd(rng);
    for (auto& x : vq) x = nd(rng);
    for (int h = 0; h < q_heads; ++h)
      for (int d = 0; d < dim; ++d)
        qq[std::size_t(h) * dim + d] = 0.5f * nd(rng) + 7.f * needle_dir[std::size_t(h / G) * dim + d];
  }
};

inline void normalize(float* x, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(s + 1e-30));
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

//! `tokens` tokens in sentences of about `mean_sentence` tokens; `needles` of them (spread over the depth) share
//! the needle topic; the last `question` prompt queries ask about it.
inline workload make(std::int64_t tokens, int q_heads, int kv_heads, int dim, int mean_sentence = 24, int needles = 3,
                     std::uint32_t seed = 2025, int question = 64) {
  workload w{q_heads, kv_heads, dim, tokens, {}, {}, {}, {}, {}, {}, {}, std::mt19937(seed)};
  auto& rng = w.rng;
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> len(std::max(2, mean_sentence / 2), mean_sentence * 3 / 2);
  w.ids.resize(tokens);
  w.sentence_of.resize(tokens);
  std::int32_t s = 0;
  for (std::int64_t t = 0; t < tokens;) {
    const std::int64_t n = std::min<std::int64_t>(len(rng), tokens - t);
    for (std::int64_t i = 0; i < n; ++i) {
      w.ids[t + i] = i + 1 == n ? boundary_id : std::int32_t(100 + rng() % (vocab_size - 100));
      w.sentence_of[t + i] = s;
    }
    t += n;
    ++s;
  }
  const int sentences = s;
  for (int i = 0; i < needles; ++i) w.needles.push_back(int((i + 0.5) * sentences / needles));
  // topics: one random unit direction per sentence and KV head; needles share one
  w.needle_dir.resize(std::size_t(kv_heads) * dim);
  for (auto& x : w.needle_dir) x = nd(rng);
  for (int h = 0; h < kv_heads; ++h) normalize(&w.needle_dir[std::size_t(h) * dim], dim);
  std::vector<float> topic(std::size_t(kv_heads) * dim);
  w.k.resize(std::size_t(tokens) * kv_heads * dim);
  w.v.resize(w.k.size());
  w.q.resize(std::size_t(tokens) * q_heads * dim);
  const float scale = std::sqrt(float(dim));
  std::int32_t cur = -1;
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (w.sentence_of[t] != cur) {
      cur = w.sentence_of[t];
      const bool needle = std::find(w.needles.begin(), w.needles.end(), cur) != w.needles.end();
      for (auto& x : topic) x = nd(rng);
      for (int h = 0; h < kv_heads; ++h) normalize(&topic[std::size_t(h) * dim], dim);
      if (needle) topic = w.needle_dir;
    }
    for (int h = 0; h < kv_heads; ++h)
      for (int d = 0; d < dim; ++d) {
        const std::size_t i = (std::size_t(t) * kv_heads + h) * dim + d;
        w.k[i] = 1.2f * scale * topic[std::size_t(h) * dim + d] + nd(rng);
        w.v[i] = nd(rng);
      }
  }
  // prompt queries: noise, except the last `question` ones, which ask about the needle (the question closes the
  // prompt, as in RULER and LongBench) — what observation-window methods rely on
  for (auto& x : w.q) x = nd(rng);
  const int G = q_heads / kv_heads;
  for (std::int64_t t = std::max<std::int64_t>(0, tokens - question); t < tokens; ++t)
    for (int h = 0; h < q_heads; ++h)
      for (int d = 0; d < dim; ++d)
        w.q[(std::size_t(t) * q_heads + h) * dim + d] =
            0.5f * nd(rng) + 7.f * w.needle_dir[std::size_t(h / G) * dim + d];
  return w;
}

template <class T>
std::vector<T> to(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = skv::from_float<T>(x[i]);
  return y;
}

} // namespace synthetic
