//! @file detail/attention_kernels.hpp
//! Exact decode attention over an index set: split-KV with an online softmax, float accumulation.
//!
//! Work item = (KV pair, group block of up to 8 query heads, chunk of the index list). Each item reads its keys
//! and values once for all query heads of the group (GQA), keeps a running max and sum per head, and writes a
//! partial (m, l, acc); a second functor merges the chunks. This is flash-decoding's split, which keeps both CPU
//! cores and GPU SMs busy even at batch 1.
#pragma once

#include <skv/backend/tier.hpp>
#include <skv/detail/simd.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <cmath>
#include <cstdint>

SKV_NAMESPACE_BEGIN
namespace detail {

inline constexpr int attend_group_block = 8; //!< query heads per work item
inline constexpr int attend_block = 32;      //!< tokens scored before their values are read

//! Shared arguments of the decode-attention functors.
template <class T>
struct attend_params {
  const float* q;            //!< [batch, q_heads, dim] queries, pre-multiplied by the softmax scale
  const T* const* k_all;     //!< [pairs] first key row of each pair's region, read when all[p]
  const T* const* v_all;     //!< [pairs] first value row, read when all[p]
  const T* const* k_sel;     //!< [pairs] base of the rows named by `slots` otherwise
  const T* const* v_sel;     //!< [pairs]
  const std::int32_t* slots; //!< [pairs, slot_stride] row of each selected token within k_sel[p]
  const std::int32_t* count; //!< [pairs] tokens to attend
  const std::uint8_t* all;   //!< [pairs] 1: rows 0..count-1 of k_all[p] (no slot list)
  std::int64_t slot_stride;
  int kv_heads, group, chunk, chunks, gblocks;
  float* part_ml;  //!< [items, 8, 2] running max and sum
  float* part_acc; //!< [items, 8, dim] unnormalised output
};

#if defined(SKV_HAVE_AVX512)
#  define SKV_ATTEND_AVX512 1
SKV_SIMD_CODE_BEGIN
//! AVX-512 building blocks of the CPU decode-attention path (host code only; the portable loops are the reference).
namespace avx512 {
//! polynomial_exp on 16 lanes (same reduction and polynomial; 2^n by scalef).
SKV_FORCEINLINE __m512 exp16(__m512 x) {
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.72f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  const __m512 e = _mm512_scalef_ps(p, n);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ), e);
}
} // namespace avx512
#elif defined(SKV_HAVE_AVX2)
#  define SKV_ATTEND_AVX2 1
SKV_SIMD_CODE_BEGIN
namespace avx2 {
//! polynomial_exp on 8 lanes (same reduction and polynomial, 2^n as a product of two normal powers); lanes below
//! -87.3 and NaN lanes give 0.
SKV_FORCEINLINE __m256 exp8(__m256 x) {
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.72f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 e =
      _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23))),
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23)));
  return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ), e);
}
} // namespace avx2
#endif

//! Partial attention of one work item: running max, sum and unnormalised output per query head of the group block.
template <class T, int D>
struct attend_partial {
  attend_params<T> a;

  struct item_geometry {
    std::int64_t p;
    int ng, begin, end;
    const float* q;
    const T* kb;
    const T* vb;
    const std::int32_t* slots;
    bool all;
  };
  SKV_HOST_DEVICE item_geometry geometry(std::int64_t item) const {
    constexpr int GB = attend_group_block;
    const std::int64_t per_pair = std::int64_t(a.chunks) * a.gblocks;
    item_geometry g;
    g.p = item / per_pair;
    const int gb = int((item % per_pair) / a.chunks), c = int(item % a.chunks);
    const int g0 = gb * GB;
    g.ng = (a.group - g0) < GB ? (a.group - g0) : GB;
    const int n = a.count[g.p];
    g.begin = c * a.chunk;
    g.end = (g.begin + a.chunk) < n ? (g.begin + a.chunk) : n;
    const int b = int(g.p / a.kv_heads), h = int(g.p % a.kv_heads);
    g.q = a.q + (std::int64_t(b) * a.kv_heads * a.group + std::int64_t(h) * a.group + g0) * D;
    g.all = a.all[g.p] != 0;
    g.kb = g.all ? a.k_all[g.p] : a.k_sel[g.p];
    g.vb = g.all ? a.v_all[g.p] : a.v_sel[g.p];
    g.slots = a.slots + g.p * a.slot_stride;
    return g;
  }

  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
#if defined(SKV_ATTEND_AVX512)
    if constexpr (D % 16 == 0) {
      run_avx512(item);
      return;
    }
#elif defined(SKV_ATTEND_AVX2)
    if constexpr (D % 8 == 0) {
      switch (geometry(item).ng) { // the heads' accumulators live in registers: one body per group size
      case 1:
        return run_avx2<1>(item);
      case 2:
        return run_avx2<2>(item);
      case 3:
        return run_avx2<3>(item);
      case 4:
        return run_avx2<4>(item);
      case 5:
        return run_avx2<5>(item);
      case 6:
        return run_avx2<6>(item);
      case 7:
        return run_avx2<7>(item);
      default:
        return run_avx2<8>(item);
      }
    }
#endif
    run_portable(item);
  }

  //! Plain loops, written so a compiler vectorizes them without -ffast-math: dot products and the softmax sum go
  //! through 16 lane-wise partials (no floating-point reduction across a vectorized loop), exp is polynomial_exp.
  SKV_HOST_DEVICE void run_portable(std::int64_t item) const {
    constexpr int GB = attend_group_block, BLK = attend_block, W = 16;
    const item_geometry it = geometry(item);
    const int ng = it.ng;
    float m[GB], l[GB], acc[GB][D];
    bool bad[GB];
    for (int g = 0; g < GB; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.f;
      bad[g] = false;
      for (int d = 0; d < D; ++d) acc[g][d] = 0.f;
    }
    float s[GB][BLK];
    for (int t0 = it.begin; t0 < it.end; t0 += BLK) {
      const int nb = (it.end - t0) < BLK ? (it.end - t0) : BLK;
      for (int j = 0; j < nb; ++j) {
        const std::int64_t row = it.all ? t0 + j : it.slots[t0 + j];
        const T* k = it.kb + row * D;
        float kf[D];
        for (int d = 0; d < D; ++d) kf[d] = to_float(k[d]);
        for (int g = 0; g < ng; ++g) {
          const float* qg = it.q + g * D;
          float part[W];
          for (int e = 0; e < W; ++e) part[e] = 0.f;
          for (int d0 = 0; d0 + W <= D; d0 += W)
            for (int e = 0; e < W; ++e) part[e] += qg[d0 + e] * kf[d0 + e];
          for (int d = D / W * W; d < D; ++d) part[d % W] += qg[d] * kf[d];
          float dot = 0.f;
          for (int e = 0; e < W; ++e) dot += part[e];
          s[g][j] = dot;
        }
      }
      for (int g = 0; g < ng; ++g) {
        float mb = m[g];
        for (int j = 0; j < nb; ++j) {
          mb = s[g][j] > mb ? s[g][j] : mb;
          bad[g] = bad[g] || !(s[g][j] < INFINITY); // NaN or +inf: the softmax is undefined (NaN out)
        }
        const float rescale = polynomial_exp(m[g] - mb); // exp(-inf) = 0 on the first block
        l[g] *= rescale;
        for (int d = 0; d < D; ++d) acc[g][d] *= rescale;
        m[g] = mb;
        for (int j = 0; j < nb; ++j) s[g][j] = polynomial_exp(s[g][j] - mb);
        for (int j = 0; j < nb; ++j) l[g] += s[g][j];
      }
      for (int j = 0; j < nb; ++j) {
        const std::int64_t row = it.all ? t0 + j : it.slots[t0 + j];
        const T* v = it.vb + row * D;
        float vf[D];
        for (int d = 0; d < D; ++d) vf[d] = to_float(v[d]);
        for (int g = 0; g < ng; ++g) {
          const float pj = s[g][j];
          for (int d = 0; d < D; ++d) acc[g][d] += pj * vf[d];
        }
      }
    }
    write(item, ng, m, l, bad, acc);
  }

  //! Writes the item's partials; a head that saw a NaN or +inf logit gets l = NaN, which the merge propagates to
  //! its output (as PyTorch's and FlashInfer's softmax do).
  SKV_HOST_DEVICE void write(std::int64_t item, int ng, const float* m, const float* l, const bool* bad,
                             const float (*acc)[D]) const {
    constexpr int GB = attend_group_block;
    float* ml = a.part_ml + item * GB * 2;
    float* out = a.part_acc + item * GB * D;
    for (int g = 0; g < ng; ++g) {
      ml[2 * g] = m[g];
      ml[2 * g + 1] = bad[g] ? NAN : l[g];
      for (int d = 0; d < D; ++d) out[g * D + d] = acc[g][d];
    }
  }

#if defined(SKV_ATTEND_AVX512) || defined(SKV_ATTEND_AVX2)
  //! Prefetches the K and V rows of the tokens [from, to) of a slot list: the offloader's buffer reuses resident
  //! rows, so after a few steps the slots of consecutive tokens are scattered and the hardware prefetcher, which
  //! follows addresses rather than indices, no longer runs ahead of the loop (-13 to -28% on `attend` at 128K in the
  //! decode step for the lossless presets; docs/perf.md).
  static void prefetch_rows(const item_geometry& it, int from, int to) {
    if (it.all) return; // contiguous rows
    for (int t = from; t < to; ++t) {
      const char* k = reinterpret_cast<const char*>(it.kb + std::int64_t(it.slots[t]) * D);
      const char* v = reinterpret_cast<const char*>(it.vb + std::int64_t(it.slots[t]) * D);
      for (int b = 0; b < int(D * sizeof(T)); b += 64) {
        _mm_prefetch(k + b, _MM_HINT_T0);
        _mm_prefetch(v + b, _MM_HINT_T0);
      }
    }
  }
#endif

#if defined(SKV_ATTEND_AVX512)
  //! 16 tokens at a time: scores as 16 dot-product vectors reduced by one transpose tree per head, a vector online
  //! softmax, then P V with the outputs of up to four heads held in registers. Same arithmetic as run_portable up to
  //! the order of float additions.
  void run_avx512(std::int64_t item) const {
    constexpr int GB = attend_group_block, C = D / 16;
    constexpr int HP = C >= 16 ? 1 : (16 / C < 4 ? 16 / C : 4); // heads whose outputs fit in 16 registers
    const item_geometry it = geometry(item);
    const int ng = it.ng;
    alignas(64) float m[GB], l[GB], acc[GB][D];
    bool bad[GB];
    alignas(64) __m512 dots[GB][16];
    alignas(64) __m512 vf[16][C];
    alignas(64) float pb[GB][16];
    for (int g = 0; g < GB; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.f;
      bad[g] = false;
      for (int d = 0; d < D; ++d) acc[g][d] = 0.f;
    }
    for (int t0 = it.begin; t0 < it.end; t0 += 16) {
      const int nb = (it.end - t0) < 16 ? (it.end - t0) : 16;
      prefetch_rows(it, t0 + 16, t0 + 32 < it.end ? t0 + 32 : it.end); // the next block's
      const __mmask16 live = __mmask16((1u << nb) - 1u);
      // scores
      for (int j = 0; j < 16; ++j) {
        if (j >= nb) {
          for (int g = 0; g < ng; ++g) dots[g][j] = _mm512_setzero_ps();
          continue;
        }
        const std::int64_t row = it.all ? t0 + j : it.slots[t0 + j];
        const T* k = it.kb + row * D;
        const T* v = it.vb + row * D;
        __m512 kr[C];
        for (int c = 0; c < C; ++c) kr[c] = avx512::load16(k + 16 * c);
        for (int c = 0; c < C; ++c) vf[j][c] = avx512::load16(v + 16 * c);
        for (int g = 0; g < ng; ++g) {
          const float* qg = it.q + g * D;
          __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(qg), kr[0]);
          __m512 s1 = C > 1 ? _mm512_mul_ps(_mm512_loadu_ps(qg + 16), kr[1 < C ? 1 : 0]) : _mm512_setzero_ps();
          for (int c = 2; c < C; c += 2) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * c), kr[c], s0);
            if (c + 1 < C) s1 = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * (c + 1)), kr[c + 1 < C ? c + 1 : c], s1);
          }
          dots[g][j] = _mm512_add_ps(s0, s1);
        }
      }
      // online softmax per head
      for (int g = 0; g < ng; ++g) {
        const __m512 sv = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), live, avx512::sum16(dots[g]));
        // NaN or +inf logits (not < +inf): the softmax is undefined, the output NaN
        bad[g] = bad[g] || _mm512_cmp_ps_mask(sv, _mm512_set1_ps(INFINITY), _CMP_NLT_UQ) != 0;
        const float bm = _mm512_reduce_max_ps(sv);
        if (bm > m[g]) {
          const float rescale = polynomial_exp(m[g] - bm);
          l[g] *= rescale;
          const __m512 r = _mm512_set1_ps(rescale);
          for (int c = 0; c < C; ++c)
            _mm512_store_ps(acc[g] + 16 * c, _mm512_mul_ps(r, _mm512_load_ps(acc[g] + 16 * c)));
          m[g] = bm;
        }
        const __m512 pv = avx512::exp16(_mm512_sub_ps(sv, _mm512_set1_ps(m[g])));
        l[g] += _mm512_reduce_add_ps(pv);
        _mm512_store_ps(pb[g], pv);
      }
      // P V
      for (int g0 = 0; g0 < ng; g0 += HP) {
        const int hp = (ng - g0) < HP ? (ng - g0) : HP;
        switch (hp) {
        case 1:
          accumulate_pv<1>(acc[g0], pb[g0], vf, nb);
          break;
        case 2:
          accumulate_pv<HP >= 2 ? 2 : 1>(acc[g0], pb[g0], vf, nb);
          break;
        case 3:
          accumulate_pv<HP >= 3 ? 3 : 1>(acc[g0], pb[g0], vf, nb);
          break;
        default:
          accumulate_pv<HP>(acc[g0], pb[g0], vf, nb);
          break;
        }
      }
    }
    write(item, ng, m, l, bad, acc);
  }

  //! acc[h] += sum_j p[h][j] v[j] for H consecutive heads (rows of 16 floats apart in `p`, D apart in `acc`).
  template <int H>
  SKV_FORCEINLINE static void accumulate_pv(float* acc, const float* p, const __m512 (*vf)[D / 16], int nb) {
    constexpr int C = D / 16;
    __m512 o[H][C];
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < C; ++c) o[h][c] = _mm512_load_ps(acc + h * D + 16 * c);
    for (int j = 0; j < nb; ++j)
      for (int h = 0; h < H; ++h) {
        const __m512 w = _mm512_set1_ps(p[h * 16 + j]);
        for (int c = 0; c < C; ++c) o[h][c] = _mm512_fmadd_ps(w, vf[j][c], o[h][c]);
      }
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < C; ++c) _mm512_store_ps(acc + h * D + 16 * c, o[h][c]);
  }
#endif

#if defined(SKV_ATTEND_AVX2)
  //! 16 tokens at a time for NG query heads. AVX2 has 16 vector registers, so the loops run over 8-float columns
  //! with the heads' accumulators in registers, and (for NG <= 4) two tokens per query load in the scores and two
  //! columns per weight broadcast in P V, so that FMAs rather than loads bound them. Scores are 8-lane partial dots
  //! reduced by `sum8`, then an online softmax per head. Same arithmetic as run_portable up to the order of float
  //! additions.
  template <int NG>
  void run_avx2(std::int64_t item) const {
    constexpr int BLK = 16, C = D / 8;
    constexpr int TT = NG <= 4 ? 2 : 1, CC = NG <= 4 && C % 2 == 0 ? 2 : 1;
    const item_geometry it = geometry(item);
    alignas(32) float m[attend_group_block], l[attend_group_block], acc[attend_group_block][D];
    bool bad[attend_group_block];
    alignas(32) __m256 dots[NG][BLK];
    alignas(32) float pb[NG][BLK];
    const T* krow[BLK];
    const T* vrow[BLK];
    for (int g = 0; g < NG; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.f;
      bad[g] = false;
      for (int d = 0; d < D; ++d) acc[g][d] = 0.f;
    }
    for (int t0 = it.begin; t0 < it.end; t0 += BLK) {
      const int nb = (it.end - t0) < BLK ? (it.end - t0) : BLK;
      for (int j = 0; j < BLK; ++j) { // past the end: the last row again, its scores masked to -inf below
        const std::int64_t t = t0 + (j < nb ? j : nb - 1), row = it.all ? t : it.slots[t];
        krow[j] = it.kb + row * D;
        vrow[j] = it.vb + row * D;
      }
      prefetch_rows(it, t0 + BLK, t0 + 2 * BLK < it.end ? t0 + 2 * BLK : it.end); // the next block's
      // scores: each key column converted once, each query column loaded once per TT tokens
      for (int j = 0; j < BLK; j += TT) {
        __m256 s[TT][NG];
        for (int t = 0; t < TT; ++t)
          for (int g = 0; g < NG; ++g) s[t][g] = _mm256_setzero_ps();
        for (int c = 0; c < C; ++c) {
          __m256 kc[TT];
          for (int t = 0; t < TT; ++t) kc[t] = avx2::load8(krow[j + t] + 8 * c);
          for (int g = 0; g < NG; ++g) {
            const __m256 qc = _mm256_loadu_ps(it.q + g * D + 8 * c);
            for (int t = 0; t < TT; ++t) s[t][g] = _mm256_fmadd_ps(qc, kc[t], s[t][g]);
          }
        }
        for (int t = 0; t < TT; ++t)
          for (int g = 0; g < NG; ++g) dots[g][j + t] = s[t][g];
      }
      // online softmax per head
      const __m256i live0 = avx2::first_lanes(nb), live1 = avx2::first_lanes(nb - 8);
      const __m256 ninf = _mm256_set1_ps(-INFINITY), inf = _mm256_set1_ps(INFINITY);
      for (int g = 0; g < NG; ++g) {
        const __m256 s0 = _mm256_blendv_ps(ninf, avx2::sum8(dots[g]), _mm256_castsi256_ps(live0));
        const __m256 s1 = _mm256_blendv_ps(ninf, avx2::sum8(dots[g] + 8), _mm256_castsi256_ps(live1));
        // NaN or +inf logits (not < +inf): the softmax is undefined, the output NaN
        const __m256 nlt = _mm256_or_ps(_mm256_cmp_ps(s0, inf, _CMP_NLT_UQ), _mm256_cmp_ps(s1, inf, _CMP_NLT_UQ));
        bad[g] = bad[g] || _mm256_movemask_ps(nlt) != 0;
        const float bm = avx2::reduce_max(_mm256_max_ps(s0, s1));
        if (bm > m[g]) {
          const float rescale = polynomial_exp(m[g] - bm);
          l[g] *= rescale;
          const __m256 r = _mm256_set1_ps(rescale);
          for (int c = 0; c < C; ++c) _mm256_store_ps(acc[g] + 8 * c, _mm256_mul_ps(r, _mm256_load_ps(acc[g] + 8 * c)));
          m[g] = bm;
        }
        const __m256 mv = _mm256_set1_ps(m[g]);
        const __m256 p0 = avx2::exp8(_mm256_sub_ps(s0, mv)), p1 = avx2::exp8(_mm256_sub_ps(s1, mv));
        l[g] += avx2::reduce_add(_mm256_add_ps(p0, p1));
        _mm256_store_ps(pb[g], p0);
        _mm256_store_ps(pb[g] + 8, p1);
      }
      // P V: CC columns of 8 floats at a time, every head's accumulators in registers
      for (int c = 0; c < C; c += CC) {
        __m256 o[NG][CC];
        for (int g = 0; g < NG; ++g)
          for (int u = 0; u < CC; ++u) o[g][u] = _mm256_load_ps(acc[g] + 8 * (c + u));
        for (int j = 0; j < nb; ++j) {
          __m256 vc[CC];
          for (int u = 0; u < CC; ++u) vc[u] = avx2::load8(vrow[j] + 8 * (c + u));
          for (int g = 0; g < NG; ++g) {
            const __m256 pj = _mm256_broadcast_ss(pb[g] + j);
            for (int u = 0; u < CC; ++u) o[g][u] = _mm256_fmadd_ps(pj, vc[u], o[g][u]);
          }
        }
        for (int g = 0; g < NG; ++g)
          for (int u = 0; u < CC; ++u) _mm256_store_ps(acc[g] + 8 * (c + u), o[g][u]);
      }
    }
    write(item, NG, m, l, bad, acc);
  }
#endif
};
#if defined(SKV_ATTEND_AVX512) || defined(SKV_ATTEND_AVX2)
SKV_SIMD_CODE_END
#endif

//! Merges the chunks of one (pair, query head) and writes the normalised output.
template <class O, int D>
struct attend_merge {
  const float* part_ml;
  const float* part_acc;
  tensor_view<O> out; //!< [batch, q_heads, dim]
  int kv_heads, group, chunks, gblocks;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    constexpr int GB = attend_group_block;
    const std::int64_t p = i / group;
    const int g = int(i % group), gb = g / GB, gi = g % GB;
    const std::int64_t item0 = (p * gblocks + gb) * chunks;
    float m = -INFINITY;
    for (int c = 0; c < chunks; ++c) {
      const float mc = part_ml[((item0 + c) * GB + gi) * 2];
      m = mc > m ? mc : m;
    }
    float l = 0.f, acc[D];
    for (int d = 0; d < D; ++d) acc[d] = 0.f;
    for (int c = 0; c < chunks; ++c) {
      const float* ml = part_ml + ((item0 + c) * GB + gi) * 2;
      if (ml[1] == 0.f) continue; // empty chunk (a NaN sum is not skipped: it makes the output NaN)
      const float w = std::exp(ml[0] - m);
      l += w * ml[1];
      const float* a = part_acc + ((item0 + c) * GB + gi) * D;
      for (int d = 0; d < D; ++d) acc[d] += w * a[d];
    }
    const int b = int(p / kv_heads), h = int(p % kv_heads);
    O* o = out.at(b, h * group + g);
    const float inv = l == 0.f ? 0.f : 1.f / l; // l == 0: nothing selected, output 0
    for (int d = 0; d < D; ++d) o[d] = from_float<O>(acc[d] * inv);
  }
};

} // namespace detail
SKV_NAMESPACE_END
