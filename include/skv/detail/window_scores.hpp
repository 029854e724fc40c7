//! @file detail/window_scores.hpp
//! Observation-window attention scores (SnapKV, arXiv 2404.14469 §4): how much attention each prompt token receives
//! from the last `w` prompt queries, summed over the window queries and over the query heads of a KV group.
//!
//! score[p][j] = sum over window query i (at position t_i = n - w + i) and group head g, j <= t_i, of
//! softmax_j(scale * q_{i,g} . k_j), with the cache's softmax scale. Two passes over the keys (softmax statistics, then
//! the normalised sums), split into (pair, key chunk) work items; keys are read as blocks converted to float once per
//! block.
#pragma once

#include <skv/backend/stream.hpp>
#include <skv/backend/tier.hpp>
#include <skv/detail/attention_kernels.hpp>
#include <skv/detail/ragged.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

inline constexpr int window_key_block = 32;

//! Where each pair's window and keys are.
struct window_geometry {
  const std::int64_t* seq_row;   //!< [batch] packed row of position 0 of each sequence
  const std::int32_t* seq_len;   //!< [batch] prompt length
  const std::int64_t* score_off; //!< [pairs] first entry of each pair's scores
  int kv_heads, group, window, chunk, chunks;
  SKV_HOST_DEVICE int len(std::int64_t p) const { return seq_len[p / kv_heads]; }
  SKV_HOST_DEVICE int win(std::int64_t p) const { return len(p) < window ? len(p) : window; }
};

//! Copies the window queries of every pair to float, pre-scaled: qw[((p * window + i) * group + g) * dim + d].
template <class Src>
struct load_window_queries {
  tensor_view<const Src> q;
  window_geometry geo;
  float* qw;
  int dim;
  float scale;
  SKV_HOST_DEVICE void operator()(std::int64_t r) const {
    const std::int64_t rows = std::int64_t(geo.window) * geo.group;
    const std::int64_t p = r / rows;
    const int i = int((r % rows) / geo.group), g = int(r % geo.group);
    const int n = geo.len(p), w = geo.win(p);
    float* dst = qw + r * dim;
    if (i >= w) return;
    const int b = int(p / geo.kv_heads), h = int(p % geo.kv_heads);
    const Src* src = q.at(geo.seq_row[b] + n - w + i, h * geo.group + g);
    for (int d = 0; d < dim; ++d) dst[d] = to_float(src[d]) * scale;
  }
};

//! Pass 1 (`second == false`): per (pair, chunk) running max/sum of every window row over the chunk's keys.
//! Pass 2 (`second == true`): adds each key's normalised attention, summed over rows, into `score`.
template <class Src, int D, bool Second>
struct window_pass {
  tensor_view<const Src> k;
  window_geometry geo;
  const float* qw;     //!< [pairs, window, group, D]
  float* part_ml;      //!< [pairs * chunks, window * group, 2] (pass 1 output)
  const float* row_ml; //!< [pairs, window * group, 2] merged statistics (pass 2 input)
  float* score;        //!< pass 2 output, laid out by geo.score_off
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    constexpr int BLK = window_key_block;
    const std::int64_t p = item / geo.chunks;
    const int c = int(item % geo.chunks);
    const int n = geo.len(p), w = geo.win(p);
    const int begin = c * geo.chunk, end = (begin + geo.chunk) < n ? (begin + geo.chunk) : n;
    const int b = int(p / geo.kv_heads), h = int(p % geo.kv_heads);
    const int rows = geo.window * geo.group;
    const float* qp = qw + p * rows * D;
    float* ml = Second ? nullptr : part_ml + item * rows * 2;
    if constexpr (!Second) {
      for (int r = 0; r < rows; ++r) {
        ml[2 * r] = -INFINITY;
        ml[2 * r + 1] = 0.f;
      }
    }
    // keys of a block transposed to float once, reused by every window row: scores vectorize over the block's
    // keys (no floating-point reduction inside a vectorized loop, so no -ffast-math needed)
    float kt[D][BLK];
    for (int j0 = begin; j0 < end; j0 += BLK) {
      const int nb = (end - j0) < BLK ? (end - j0) : BLK;
      for (int j = 0; j < BLK; ++j) {
        const Src* src = k.at(geo.seq_row[b] + j0 + (j < nb ? j : 0), h);
        for (int d = 0; d < D; ++d) kt[d][j] = to_float(src[d]);
      }
      float acc[BLK];
      for (int j = 0; j < BLK; ++j) acc[j] = 0.f;
      for (int i = 0; i < w; ++i) {
        const int t = n - w + i; // position of window query i: sees keys j <= t
        const int visible = t + 1 - j0 < nb ? t + 1 - j0 : nb;
        if (visible <= 0) continue;
        for (int g = 0; g < geo.group; ++g) {
          const int r = i * geo.group + g;
          const float* q = qp + std::int64_t(r) * D;
          float s[BLK];
          for (int j = 0; j < BLK; ++j) s[j] = 0.f;
          for (int d = 0; d < D; ++d) {
            const float x = q[d];
            for (int j = 0; j < BLK; ++j) s[j] += x * kt[d][j];
          }
          for (int j = visible; j < BLK; ++j) s[j] = -INFINITY;
          if constexpr (!Second) {
            float m = ml[2 * r];
            for (int j = 0; j < visible; ++j) m = s[j] > m ? s[j] : m;
            float e[BLK];
            for (int j = 0; j < BLK; ++j) e[j] = polynomial_exp(s[j] - m);
            float l = ml[2 * r + 1] * polynomial_exp(ml[2 * r] - m);
            for (int j = 0; j < visible; ++j) l += e[j];
            ml[2 * r] = m;
            ml[2 * r + 1] = l;
          } else {
            const float m = row_ml[(p * rows + r) * 2], inv_l = 1.f / row_ml[(p * rows + r) * 2 + 1];
            for (int j = 0; j < BLK; ++j) acc[j] += polynomial_exp(s[j] - m) * inv_l;
          }
        }
      }
      if constexpr (Second) {
        float* out = score + geo.score_off[p] + j0;
        for (int j = 0; j < nb; ++j) out[j] = acc[j];
      }
    }
  }
};

//! Merges pass-1 chunk statistics per (pair, row).
struct window_merge {
  window_geometry geo;
  const float* part_ml;
  float* row_ml;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const int rows = geo.window * geo.group;
    const std::int64_t p = i / rows;
    const int r = int(i % rows);
    float m = -INFINITY;
    for (int c = 0; c < geo.chunks; ++c) {
      const float mc = part_ml[((p * geo.chunks + c) * rows + r) * 2];
      m = mc > m ? mc : m;
    }
    float l = 0.f;
    for (int c = 0; c < geo.chunks; ++c) {
      const float* ml = part_ml + ((p * geo.chunks + c) * rows + r) * 2;
      if (ml[1] > 0.f) l += ml[1] * std::exp(ml[0] - m);
    }
    row_ml[i * 2] = m;
    row_ml[i * 2 + 1] = l > 0.f ? l : 1.f;
  }
};

//! Computes observation-window scores for every (sequence, KV head) pair of a prefill batch, with softmax scale
//! `scale`. `score` is resized to sum over pairs of the sequence length and laid out by `score_off` (host,
//! [pairs + 1]). Scratch comes from `mem`.
template <class Src>
void window_scores(tensor_view<const Src> q, tensor_view<const Src> k, std::span<const std::int64_t> seq_row,
                   std::span<const std::int32_t> seq_len, int kv_heads, int group, int dim, int window, float scale,
                   memory_resource* mem, stream_t s, fast_vector<float>& score, std::vector<std::int64_t>& score_off) {
  const std::int64_t batch = std::int64_t(seq_len.size()), pairs = batch * kv_heads;
  score_off.assign(pairs + 1, 0);
  int max_len = 0;
  for (std::int64_t p = 0; p < pairs; ++p) {
    const int n = seq_len[p / kv_heads];
    score_off[p + 1] = score_off[p] + n;
    max_len = n > max_len ? n : max_len;
  }
  score = fast_vector<float>(static_cast<std::size_t>(score_off[pairs]), 0.f, mem);
  if (max_len == 0) return;
  const int chunk = 1024, chunks = (max_len + chunk - 1) / chunk, rows = window * group;
  fast_vector<std::int64_t> d_row(mem), d_off(mem);
  fast_vector<std::int32_t> d_len(mem);
  upload(d_row, std::vector<std::int64_t>(seq_row.begin(), seq_row.end()), s);
  upload(d_len, std::vector<std::int32_t>(seq_len.begin(), seq_len.end()), s);
  upload(d_off, score_off, s);
  synchronize(s);
  window_geometry geo{raw(d_row), raw(d_len), raw(d_off), kv_heads, group, window, chunk, chunks};
  fast_vector<float> qw(static_cast<std::size_t>(pairs * rows * dim), 0.f, mem);
  parallel_for(pairs * rows, load_window_queries<Src>{q, geo, raw(qw), dim, scale}, s);
  fast_vector<float> part(static_cast<std::size_t>(pairs * chunks * rows * 2), 0.f, mem);
  fast_vector<float> row_ml(static_cast<std::size_t>(pairs * rows * 2), 0.f, mem);
  dispatch_head_dim(dim, [&](auto d) {
    constexpr int D = decltype(d)::value;
    parallel_for(pairs * chunks, window_pass<Src, D, false>{k, geo, raw(qw), raw(part), nullptr, nullptr}, s);
    parallel_for(pairs * rows, window_merge{geo, raw(part), raw(row_ml)}, s);
    parallel_for(pairs * chunks, window_pass<Src, D, true>{k, geo, raw(qw), nullptr, raw(row_ml), raw(score)}, s);
  });
  synchronize(s); // scratch goes out of scope
}

//! 1-D max pool (stride 1, `kernel` odd, padding kernel / 2) of each pair's scores over positions [0, limit):
//! SnapKV's smoothing, which keeps the neighbours of an important token so retained text stays readable.
struct max_pool {
  const float* in;
  float* out;
  const std::int64_t* off;
  const std::int32_t* limit; //!< [pairs] positions to pool
  std::int64_t max_len;
  int kernel;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_len, j = i % max_len;
    const int n = limit[p];
    if (j >= n) return;
    const int half = kernel / 2;
    const std::int64_t lo = j - half < 0 ? 0 : j - half, hi = j + half < n - 1 ? j + half : n - 1;
    float m = -INFINITY;
    for (std::int64_t t = lo; t <= hi; ++t) m = in[off[p] + t] > m ? in[off[p] + t] : m;
    out[off[p] + j] = m;
  }
};

} // namespace detail
SKV_NAMESPACE_END
