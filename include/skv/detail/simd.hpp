//! @file detail/simd.hpp
//! AVX-512 building blocks shared by the CPU kernels (host code only; every kernel keeps portable loops, which are the
//! reference and what the GPU runs): widening loads of 16 K/V elements, a 16-way transpose-and-add, and the dot
//! product of one query with up to 16 rows.
#pragma once

#include <skv/numeric.hpp>

#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h>
#  define SKV_HAVE_AVX512 1
#endif

// GCC 12's AVX-512 intrinsics seed results with _mm512_undefined_*(), which -W(maybe-)uninitialized reports in the
// function they are inlined into (a false positive): code that calls them sits between these two.
#if defined(__GNUC__) && !defined(__clang__)
#  define SKV_SIMD_CODE_BEGIN                                                                                          \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")                               \
        _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#  define SKV_SIMD_CODE_END _Pragma("GCC diagnostic pop")
#else
#  define SKV_SIMD_CODE_BEGIN
#  define SKV_SIMD_CODE_END
#endif

SKV_NAMESPACE_BEGIN
namespace detail {
#if defined(SKV_HAVE_AVX512)
SKV_SIMD_CODE_BEGIN
namespace avx512 {
SKV_FORCEINLINE __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
SKV_FORCEINLINE __m512 load16(const bfloat16* p) { // bf16 -> f32 is a 16-bit shift
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
SKV_FORCEINLINE __m512 load16(const half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }

//! Lane j of the result = sum of the 16 lanes of v[j]: a transpose-and-add tree (45 shuffles/adds for 16 sums).
//! Every lane is summed in the same order, so equal rows give bitwise equal sums wherever they sit.
SKV_FORCEINLINE __m512 sum16(const __m512* v) {
  __m512 w[8], x[4], y[2];
  for (int k = 0; k < 8; ++k) // per 128-bit block: [v2k, v2k+1, v2k, v2k+1] partials
    w[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k) // per block: [v4k, v4k+1, v4k+2, v4k+3] partials
    x[k] =
        _mm512_add_ps(_mm512_shuffle_ps(w[2 * k], w[2 * k + 1], 0x44), _mm512_shuffle_ps(w[2 * k], w[2 * k + 1], 0xee));
  for (int k = 0; k < 2; ++k) // blocks: [v8k..8k+3 (b0+b1), (b2+b3), v8k+4..8k+7 (b0+b1), (b2+b3)]
    y[k] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * k], x[2 * k + 1], 0x88),
                         _mm512_shuffle_f32x4(x[2 * k], x[2 * k + 1], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x88), _mm512_shuffle_f32x4(y[0], y[1], 0xdd));
}

//! out[r] = q . rows[r] for r < n <= 16 (D a multiple of 16): each row is 16 lane-wise FMA chains, as in `dot`, and
//! the 16 rows share one transpose tree instead of 16 serial lane sums (which bound the one-row loop).
template <int D, class T>
SKV_FORCEINLINE void dot_rows16(const float* q, const T* const* rows, int n, float* out) {
  static_assert(D % 16 == 0);
  constexpr int C = D / 16;
  __m512 qv[C];
  for (int c = 0; c < C; ++c) qv[c] = _mm512_loadu_ps(q + 16 * c);
  __m512 acc[16];
  for (int r = 0; r < 16; ++r) {
    if (r < n) {
      __m512 a = _mm512_mul_ps(qv[0], load16(rows[r]));
      for (int c = 1; c < C; ++c) a = _mm512_fmadd_ps(qv[c], load16(rows[r] + 16 * c), a);
      acc[r] = a;
    } else {
      acc[r] = _mm512_setzero_ps();
    }
  }
  _mm512_mask_storeu_ps(out, __mmask16((1u << n) - 1u), sum16(acc));
}
} // namespace avx512
SKV_SIMD_CODE_END
#endif
} // namespace detail
SKV_NAMESPACE_END
