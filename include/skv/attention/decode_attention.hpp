//! @file attention/decode_attention.hpp
//! Exact decode attention over an index set: split-KV with an online softmax, float accumulation.
//!
//! Work item = (KV pair, group block of up to 8 query heads, chunk of the index list). Each item reads its keys
//! and values once for all query heads of the group (GQA), keeps a running max and sum per head, and writes a
//! partial (m, l, acc); a second functor merges the chunks. This is flash-decoding's split, which keeps both CPU
//! cores and GPU SMs busy even at batch 1.
#pragma once

#include <skv/backend/tier.hpp>
#include <skv/detail/dispatch.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <cmath>
#include <cstdint>

SKV_NAMESPACE_BEGIN
namespace detail {

//! exp(x) in float from plain arithmetic, so that loops over it vectorize (std::exp is a library call that blocks
//! vectorization without -ffast-math) and the GPU runs the same code. x = n ln2 + r with |r| <= ln2 / 2 (ln2 split
//! in two constants so n ln2 is exact), e^r by its degree-7 Taylor polynomial (truncation < 2e-8 relative), 2^n
//! applied as two normal powers of two. About 2 ulp; 0 below -87.3 (where expf is subnormal), +inf above 88.72.
SKV_HOST_DEVICE SKV_FORCEINLINE float exp_polynomial(float x) {
  const float xc = !(x >= -87.3f) ? -87.3f : (x > 88.72f ? 88.72f : x);  // NaN -> finite here, restored below
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f; // round to nearest (1.5 * 2^23 trick)
  float r = xc - n * 0.693145751953125f;                                 // ln2, high part (exact product)
  r = r - n * 1.42860682030941723e-6f;                                   // ln2, low part
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const std::int32_t ni = std::int32_t(n), n1 = ni >> 1, n2 = ni - n1; // n in [-126, 128]: both halves normal
  const float e = p * bits_to_float(std::uint32_t(n1 + 127) << 23) * bits_to_float(std::uint32_t(n2 + 127) << 23);
  return x < -87.3f ? 0.f : (x > 88.72f ? INFINITY : (x == x ? e : x));
}

inline constexpr int attend_group_block = 8; //!< query heads per work item
inline constexpr int attend_block = 32;      //!< tokens scored before their values are read

//! Shared arguments of the decode-attention functors.
template <class T>
struct attend_params {
  const float* q;            //!< [batch, q_heads, dim] queries, pre-multiplied by the softmax scale
  const T* const* k_base;    //!< [pairs] first key row of each pair's source region
  const T* const* v_base;    //!< [pairs] first value row
  const std::int32_t* slots; //!< [pairs, slot_stride] row of each selected token within the region
  const std::int32_t* count; //!< [pairs] tokens to attend
  const std::uint8_t* all;   //!< [pairs] 1: rows 0..count-1 (no slot list)
  std::int64_t slot_stride;
  int kv_heads, group, chunk, chunks, gblocks;
  float* part_ml;  //!< [items, 8, 2] running max and sum
  float* part_acc; //!< [items, 8, dim] unnormalised output
};

template <class T, int D>
struct attend_partial {
  attend_params<T> a;
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    constexpr int GB = attend_group_block, BLK = attend_block;
    const std::int64_t per_pair = std::int64_t(a.chunks) * a.gblocks;
    const std::int64_t p = item / per_pair;
    const int gb = int((item % per_pair) / a.chunks), c = int(item % a.chunks);
    const int g0 = gb * GB, ng = (a.group - g0) < GB ? (a.group - g0) : GB;
    const int n = a.count[p];
    const int begin = c * a.chunk, end = (begin + a.chunk) < n ? (begin + a.chunk) : n;
    const int b = int(p / a.kv_heads), h = int(p % a.kv_heads);
    const float* q = a.q + (std::int64_t(b) * a.kv_heads * a.group + std::int64_t(h) * a.group + g0) * D;
    const T* kb = a.k_base[p];
    const T* vb = a.v_base[p];
    const std::int32_t* slots = a.slots + p * a.slot_stride;
    const bool all = a.all[p] != 0;

    float m[GB], l[GB], acc[GB][D];
    for (int g = 0; g < GB; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.f;
      for (int d = 0; d < D; ++d) acc[g][d] = 0.f;
    }
    float s[GB][BLK];
    for (int t0 = begin; t0 < end; t0 += BLK) {
      const int nb = (end - t0) < BLK ? (end - t0) : BLK;
      for (int j = 0; j < nb; ++j) {
        const std::int64_t row = all ? t0 + j : slots[t0 + j];
        const T* k = kb + row * D;
        float kf[D];
        for (int d = 0; d < D; ++d) kf[d] = to_float(k[d]);
        for (int g = 0; g < ng; ++g) {
          float dot = 0.f;
          for (int d = 0; d < D; ++d) dot += q[g * D + d] * kf[d];
          s[g][j] = dot;
        }
      }
      for (int g = 0; g < ng; ++g) {
        float mb = m[g];
        for (int j = 0; j < nb; ++j) mb = s[g][j] > mb ? s[g][j] : mb;
        const float rescale = std::exp(m[g] - mb); // exp(-inf) = 0 on the first block
        l[g] *= rescale;
        for (int d = 0; d < D; ++d) acc[g][d] *= rescale;
        m[g] = mb;
        for (int j = 0; j < nb; ++j) {
          s[g][j] = std::exp(s[g][j] - mb);
          l[g] += s[g][j];
        }
      }
      for (int j = 0; j < nb; ++j) {
        const std::int64_t row = all ? t0 + j : slots[t0 + j];
        const T* v = vb + row * D;
        float vf[D];
        for (int d = 0; d < D; ++d) vf[d] = to_float(v[d]);
        for (int g = 0; g < ng; ++g) {
          const float pj = s[g][j];
          for (int d = 0; d < D; ++d) acc[g][d] += pj * vf[d];
        }
      }
    }
    float* ml = a.part_ml + item * GB * 2;
    float* out = a.part_acc + item * GB * D;
    for (int g = 0; g < ng; ++g) {
      ml[2 * g] = m[g];
      ml[2 * g + 1] = l[g];
      for (int d = 0; d < D; ++d) out[g * D + d] = acc[g][d];
    }
  }
};

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
      if (!(ml[1] > 0.f)) continue; // empty chunk
      const float w = std::exp(ml[0] - m);
      l += w * ml[1];
      const float* a = part_acc + ((item0 + c) * GB + gi) * D;
      for (int d = 0; d < D; ++d) acc[d] += w * a[d];
    }
    const int b = int(p / kv_heads), h = int(p % kv_heads);
    O* o = out.at(b, h * group + g);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = 0; d < D; ++d) o[d] = from_float<O>(acc[d] * inv);
  }
};

} // namespace detail
SKV_NAMESPACE_END
