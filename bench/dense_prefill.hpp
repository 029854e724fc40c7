//! @file bench/dense_prefill.hpp
//! Dense causal prefill attention, blocked (flash-attention style): the cost every prefill-time policy is compared
//! with. Work item = (query head, block of QB queries); it walks the key blocks up to the diagonal, keeps an online
//! softmax per query row and accumulates P V in float. Keys are transposed into a float block so the scores
//! vectorize over keys; values stay row-major so P V vectorizes over head_dim. Loops are written so that GCC/Clang
//! vectorize them without -ffast-math (no floating-point reductions across a vectorized loop).
#pragma once

#include <skv/backend/stream.hpp>
#include <skv/backend/tier.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h>
#  define SKV_BENCH_AVX512 1
#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic ignored "-Wmaybe-uninitialized" // GCC 12 intrinsics seed with _mm512_undefined_ps()
#  endif
#endif

namespace skv_bench {

inline constexpr int prefill_query_block = 64; //!< QB: query rows per work item
inline constexpr int prefill_key_block = 64;   //!< KB: keys per block

//! out[t, h, :] = softmax_{j <= t}(q[t, h] . k[j, h / group] * scale) v[j, h / group] for every token t and head h.
template <class T, int D>
struct causal_prefill_attention {
  const T* q; //!< [tokens, q_heads, D]
  const T* k; //!< [tokens, kv_heads, D]
  const T* v; //!< [tokens, kv_heads, D]
  float* out; //!< [tokens, q_heads, D]
  std::int64_t tokens;
  int q_heads, kv_heads;
  float scale;

  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    constexpr int QB = prefill_query_block, KB = prefill_key_block, R = 4;
    const std::int64_t blocks = (tokens + QB - 1) / QB;
    // pair short and long (causal) blocks so that contiguous ranges of items carry equal work
    const std::int64_t slot = item / q_heads, pairs = slot / 2;
    const std::int64_t qb = (slot % 2 == 0) ? pairs : blocks - 1 - pairs;
    const int h = int(item % q_heads), hk = h / (q_heads / kv_heads);
    if (qb < 0 || qb >= blocks || (slot % 2 == 1 && qb == pairs)) return; // odd block count: the middle one once
    const std::int64_t t0 = qb * QB;
    const int nq = int(tokens - t0 < QB ? tokens - t0 : QB);

    alignas(64) float qf[QB][D], acc[QB][D], m[QB], l[QB];
    alignas(64) float s[QB][KB], kt[D][KB], vf[KB][D];
    for (int i = 0; i < QB; ++i) {
      const T* src = q + ((t0 + (i < nq ? i : 0)) * q_heads + h) * D;
      for (int d = 0; d < D; ++d) qf[i][d] = skv::to_float(src[d]) * scale;
      for (int d = 0; d < D; ++d) acc[i][d] = 0.f;
      m[i] = -INFINITY;
      l[i] = 0.f;
    }
    const std::int64_t end = t0 + nq; // keys [0, end)
    for (std::int64_t j0 = 0; j0 < end; j0 += KB) {
      const int nk = int(end - j0 < KB ? end - j0 : KB);
      for (int j = 0; j < KB; ++j) {
        const std::int64_t row = j0 + (j < nk ? j : 0);
        const T* ks = k + (row * kv_heads + hk) * D;
        const T* vs = v + (row * kv_heads + hk) * D;
        for (int d = 0; d < D; ++d) kt[d][j] = skv::to_float(ks[d]);
        for (int d = 0; d < D; ++d) vf[j][d] = skv::to_float(vs[d]);
      }
      // S = Q K^T, R query rows at a time (R x KB accumulators)
#if defined(SKV_BENCH_AVX512)
      for (int i0 = 0; i0 < QB; i0 += R) {
        __m512 a[R][KB / 16];
        for (int r = 0; r < R; ++r)
          for (int c = 0; c < KB / 16; ++c) a[r][c] = _mm512_setzero_ps();
        for (int d = 0; d < D; ++d) {
          __m512 kv[KB / 16];
          for (int c = 0; c < KB / 16; ++c) kv[c] = _mm512_load_ps(&kt[d][16 * c]);
          for (int r = 0; r < R; ++r) {
            const __m512 x = _mm512_set1_ps(qf[i0 + r][d]);
            for (int c = 0; c < KB / 16; ++c) a[r][c] = _mm512_fmadd_ps(x, kv[c], a[r][c]);
          }
        }
        for (int r = 0; r < R; ++r)
          for (int c = 0; c < KB / 16; ++c) _mm512_store_ps(&s[i0 + r][16 * c], a[r][c]);
      }
#else
      for (int i0 = 0; i0 < QB; i0 += R) {
        float a[R][KB];
        for (int r = 0; r < R; ++r)
          for (int j = 0; j < KB; ++j) a[r][j] = 0.f;
        for (int d = 0; d < D; ++d)
          for (int r = 0; r < R; ++r) {
            const float x = qf[i0 + r][d];
            for (int j = 0; j < KB; ++j) a[r][j] += x * kt[d][j];
          }
        for (int r = 0; r < R; ++r)
          for (int j = 0; j < KB; ++j) s[i0 + r][j] = a[r][j];
      }
#endif
      // causal mask + online softmax
      const bool diagonal = j0 + KB > t0;
      for (int i = 0; i < nq; ++i) {
        float* si = s[i];
        if (diagonal || nk < KB)
          for (int j = 0; j < KB; ++j) si[j] = (j < nk && j0 + j <= t0 + i) ? si[j] : -INFINITY;
        float lane[16];
        for (int e = 0; e < 16; ++e) lane[e] = -INFINITY;
        for (int j = 0; j < KB; j += 16)
          for (int e = 0; e < 16; ++e) lane[e] = si[j + e] > lane[e] ? si[j + e] : lane[e];
        float mb = m[i];
        for (int e = 0; e < 16; ++e) mb = lane[e] > mb ? lane[e] : mb;
        const float rescale = skv::polynomial_exp(m[i] - mb);
        m[i] = mb;
        for (int e = 0; e < 16; ++e) lane[e] = 0.f;
        for (int j = 0; j < KB; j += 16)
          for (int e = 0; e < 16; ++e) {
            const float p = skv::polynomial_exp(si[j + e] - mb);
            si[j + e] = p;
            lane[e] += p;
          }
        float lb = 0.f;
        for (int e = 0; e < 16; ++e) lb += lane[e];
        l[i] = l[i] * rescale + lb;
        for (int d = 0; d < D; ++d) acc[i][d] *= rescale;
      }
      // O += P V
#if defined(SKV_BENCH_AVX512)
      constexpr int C = D / 16, RP = C >= 16 ? 1 : 16 / C; // rows whose outputs fit in 16 registers
      for (int i0 = 0; i0 < nq; i0 += RP) {
        __m512 o[RP][C];
        for (int r = 0; r < RP; ++r)
          for (int c = 0; c < C; ++c) o[r][c] = _mm512_load_ps(&acc[i0 + r < QB ? i0 + r : i0][16 * c]);
        for (int j = 0; j < nk; ++j) {
          __m512 w[RP];
          for (int r = 0; r < RP; ++r) w[r] = _mm512_set1_ps(s[i0 + r < QB ? i0 + r : i0][j]);
          for (int c = 0; c < C; ++c) {
            const __m512 x = _mm512_load_ps(&vf[j][16 * c]);
            for (int r = 0; r < RP; ++r) o[r][c] = _mm512_fmadd_ps(w[r], x, o[r][c]);
          }
        }
        for (int r = 0; r < RP && i0 + r < QB; ++r)
          for (int c = 0; c < C; ++c) _mm512_store_ps(&acc[i0 + r][16 * c], o[r][c]);
      }
#else
      for (int i = 0; i < nq; i += 2) {
        float* a0 = acc[i];
        float* a1 = acc[i + 1 < QB ? i + 1 : i];
        const float* p0 = s[i];
        const float* p1 = s[i + 1 < QB ? i + 1 : i];
        if (i + 1 < nq) {
          for (int j = 0; j < nk; ++j) {
            const float x0 = p0[j], x1 = p1[j];
            for (int d = 0; d < D; ++d) {
              a0[d] += x0 * vf[j][d];
              a1[d] += x1 * vf[j][d];
            }
          }
        } else {
          for (int j = 0; j < nk; ++j)
            for (int d = 0; d < D; ++d) a0[d] += p0[j] * vf[j][d];
        }
      }
#endif
    }
    for (int i = 0; i < nq; ++i) {
      float* o = out + ((t0 + i) * q_heads + h) * D;
      const float inv = 1.f / l[i];
      for (int d = 0; d < D; ++d) o[d] = acc[i][d] * inv;
    }
  }
};

//! Work items of causal_prefill_attention for `tokens` tokens and `q_heads` heads.
inline std::int64_t causal_prefill_items(std::int64_t tokens, int q_heads) {
  const std::int64_t blocks = (tokens + prefill_query_block - 1) / prefill_query_block;
  return (blocks + blocks % 2) * q_heads; // even slot count: slot 2i -> block i, slot 2i+1 -> block blocks-1-i
}

//! Floating-point operations of causal attention (QK and PV, 2 flops per multiply-add, j <= t).
inline double causal_prefill_flops(std::int64_t tokens, int q_heads, int dim) {
  return 4.0 * double(q_heads) * dim * (double(tokens) * double(tokens + 1) / 2.0);
}

} // namespace skv_bench
