//! @file detail/simd.hpp
//! SIMD building blocks shared by the CPU kernels (host code only; every kernel keeps portable loops, which are the
//! reference and what the GPU runs). AVX-512: widening loads of 16 K/V elements, a 16-way transpose-and-add, and the
//! dot product of one query with up to 16 rows. AVX2 (with FMA and F16C, for the x86 CPUs without AVX-512: AMD
//! before Zen 4, Intel client cores): the same at 8 lanes. A build uses the widest the compiler targets.
#pragma once

#include <skv/numeric.hpp>

#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h>
#  define SKV_HAVE_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h>
#  define SKV_HAVE_AVX2 1
#elif defined(__AVX2__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h> // avx2::dot_i8
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

#if defined(__AVX2__) && !defined(__CUDA_ARCH__)
namespace avx2 { // integer kernels (the sketch's and the projection's), also in AVX-512 builds
//! The 32 int8 products c[i] * q[i] summed into 8 int32 lanes (4 products each): |c| (unsigned) times q carrying
//! c's sign, adjacent pairs summed to int16 (at most 2 * 128 * 127: no saturation), then to int32.
SKV_FORCEINLINE __m256i dot_i8(__m256i c, __m256i q) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(q, c)), _mm256_set1_epi16(1));
}
} // namespace avx2
#endif

#if defined(SKV_HAVE_AVX2)
SKV_SIMD_CODE_BEGIN
namespace avx2 {
SKV_FORCEINLINE __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
SKV_FORCEINLINE __m256 load8(const bfloat16* p) { // bf16 -> f32 is a 16-bit shift
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}
SKV_FORCEINLINE __m256 load8(const half* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }

//! Lane j of the result = sum of the 8 lanes of v[j]: two rounds of pairwise horizontal adds and one add of the
//! 128-bit halves. Every lane is summed in the same order, so equal rows give bitwise equal sums wherever they sit.
SKV_FORCEINLINE __m256 sum8(const __m256* v) {
  const __m256 t0 = _mm256_hadd_ps(v[0], v[1]), t1 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 t2 = _mm256_hadd_ps(v[4], v[5]), t3 = _mm256_hadd_ps(v[6], v[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3); // [v0..v3 | v4..v7] per 128-bit half
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

//! The largest lane (a NaN lane may or may not win: callers test for NaN separately).
SKV_FORCEINLINE float reduce_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
SKV_FORCEINLINE float reduce_add(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

//! Lanes [0, n) of all-ones, the rest zero: the mask of a partial vector (n in [0, 8]).
SKV_FORCEINLINE __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

//! out[r] = q . rows[r] for r < n <= 8 (D a multiple of 8): each row is 8 lane-wise FMA chains, as in `dot`, and
//! the 8 rows share one `sum8`.
template <int D, class T>
SKV_FORCEINLINE void dot_rows8(const float* q, const T* const* rows, int n, float* out) {
  static_assert(D % 8 == 0);
  constexpr int C = D / 8;
  __m256 acc[8];
  for (int r = 0; r < 8; ++r) {
    if (r < n) {
      __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q), load8(rows[r]));
      for (int c = 1; c < C; ++c) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + 8 * c), load8(rows[r] + 8 * c), a);
      acc[r] = a;
    } else {
      acc[r] = _mm256_setzero_ps();
    }
  }
  _mm256_maskstore_ps(out, first_lanes(n), sum8(acc));
}
} // namespace avx2
SKV_SIMD_CODE_END
#endif

#if defined(SKV_HAVE_AVX512) || defined(SKV_HAVE_AVX2)
#  define SKV_HAVE_SIMD 1
SKV_SIMD_CODE_BEGIN
//! The widest of the two, for kernels written once over `lanes` elements: bit i of a mask is element i.
namespace simd {
#  if defined(SKV_HAVE_AVX512)
inline constexpr int lanes = 16;
SKV_FORCEINLINE unsigned positive(const std::int32_t* p) {
  return _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(p), _mm512_setzero_si512());
}
SKV_FORCEINLINE unsigned not_below(const float* p, float t) { // NaN is not below
  return _mm512_cmp_ps_mask(_mm512_loadu_ps(p), _mm512_set1_ps(t), _CMP_NLT_UQ);
}
SKV_FORCEINLINE void fill(float* p, float x) { _mm512_storeu_ps(p, _mm512_set1_ps(x)); }
template <int D, class T>
SKV_FORCEINLINE void dot_rows(const float* q, const T* const* rows, int n, float* out) {
  avx512::dot_rows16<D>(q, rows, n, out);
}
#  else
inline constexpr int lanes = 8;
SKV_FORCEINLINE unsigned positive(const std::int32_t* p) {
  const __m256i x = _mm256_loadu_si256((const __m256i*)p);
  return unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(x, _mm256_setzero_si256()))));
}
SKV_FORCEINLINE unsigned not_below(const float* p, float t) { // NaN is not below
  return unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p), _mm256_set1_ps(t), _CMP_NLT_UQ)));
}
SKV_FORCEINLINE void fill(float* p, float x) { _mm256_storeu_ps(p, _mm256_set1_ps(x)); }
template <int D, class T>
SKV_FORCEINLINE void dot_rows(const float* q, const T* const* rows, int n, float* out) {
  avx2::dot_rows8<D>(q, rows, n, out);
}
#  endif
} // namespace simd
SKV_SIMD_CODE_END
#endif
} // namespace detail
SKV_NAMESPACE_END
