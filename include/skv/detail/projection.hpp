//! @file detail/projection.hpp
//! The low-rank projection of a one-vector summary that the approximate pre-screen ranks by
//! (`projected_mean_key_summarizer`): per (sequence, KV head) an orthonormal basis B of `rank` directions, the
//! dominant subspace of the prompt's summaries, and for each segment p = B s (rank values). q . s is approximated by
//! (B q) . (B s), the score of q and s projected onto the subspace; the selector ranks every segment by it, then
//! scores exactly only the segments that fill a multiple of the budget by that ranking. p is kept as int8 codes with
//! one scale per segment (p ~ scale * c, scale = max|p_j| / 127: `rank` + 4 bytes): the codes' rounding (at most
//! half a step per value) is small beside what the projection itself leaves out.
//!
//! The basis is computed on the host once per prefill (the only place that synchronizes): the uncentered second
//! moment M = sum s s^T of at most `basis_sample` summaries (evenly strided), then subspace iteration -- Q <- orth(M Q),
//! `basis_iterations` times from a fixed pseudo-random start -- so the same prompt gives the same basis.
#pragma once

#include <skv/detail/simd.hpp>
#include <skv/numeric.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>
#if defined(__AVX2__) && !defined(__CUDA_ARCH__)
#  include <immintrin.h> // score_projections' AVX2 body (also in AVX-512 builds; avx2::dot_i8 in simd.hpp)
#endif

SKV_NAMESPACE_BEGIN
namespace detail {

inline constexpr int basis_sample = 2048;   //!< summaries a basis is estimated from, at most
inline constexpr int basis_iterations = 24; //!< subspace iterations (the error shrinks as (l_{r+1} / l_r)^iterations)

//! Writes `rank` orthonormal rows of `dim` floats to `basis` spanning the dominant subspace of the rows
//! `rows[i * dim, (i + 1) * dim)`, i < n (non-finite rows are skipped). Returns the number of rows used: 0 when none
//! is finite and non-zero (the basis is then still orthonormal, but says nothing about the summaries).
inline int dominant_subspace(const float* rows, std::int64_t n, int dim, int rank, float* basis) {
  std::vector<double> m(std::size_t(dim) * dim, 0.0);
  const std::int64_t stride = n > basis_sample ? (n + basis_sample - 1) / basis_sample : 1;
  int used = 0;
  for (std::int64_t i = 0; i < n; i += stride) {
    const float* x = rows + i * dim;
    bool ok = true, nonzero = false;
    for (int d = 0; d < dim; ++d) {
      ok &= std::isfinite(x[d]);
      nonzero |= x[d] != 0.f;
    }
    if (!ok || !nonzero) continue;
    ++used;
    for (int a = 0; a < dim; ++a) {
      const double xa = x[a];
      double* row = m.data() + std::size_t(a) * dim;
      for (int b = 0; b <= a; ++b) row[b] += xa * x[b];
    }
  }
  for (int a = 0; a < dim; ++a)
    for (int b = a + 1; b < dim; ++b) m[std::size_t(a) * dim + b] = m[std::size_t(b) * dim + a];
  // a fixed pseudo-random start (splitmix64), column j of Q stored as row j
  std::vector<double> q(std::size_t(rank) * dim), z(q.size());
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state] {
    std::uint64_t x = (state += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return double((x ^ (x >> 31)) >> 11) * 0x1p-53 - 0.5;
  };
  for (auto& v : q) v = next();
  // modified Gram-Schmidt, twice; a column that vanishes (M of lower rank) is replaced by a fresh random one
  auto orthonormalize = [&](std::vector<double>& a) {
    for (int j = 0; j < rank; ++j) {
      double* c = a.data() + std::size_t(j) * dim;
      for (int attempt = 0;; ++attempt) {
        const double before = [&] {
          double s = 0;
          for (int d = 0; d < dim; ++d) s += c[d] * c[d];
          return std::sqrt(s);
        }();
        for (int pass = 0; pass < 2; ++pass)
          for (int i = 0; i < j; ++i) {
            const double* o = a.data() + std::size_t(i) * dim;
            double dot = 0;
            for (int d = 0; d < dim; ++d) dot += o[d] * c[d];
            for (int d = 0; d < dim; ++d) c[d] -= dot * o[d];
          }
        double s = 0;
        for (int d = 0; d < dim; ++d) s += c[d] * c[d];
        const double norm = std::sqrt(s);
        if (norm > 1e-9 * before && norm > 0 && attempt < 8) {
          for (int d = 0; d < dim; ++d) c[d] /= norm;
          break;
        }
        for (int d = 0; d < dim; ++d) c[d] = next();
      }
    }
  };
  orthonormalize(q);
  if (used > 0)
    for (int it = 0; it < basis_iterations; ++it) {
      for (int j = 0; j < rank; ++j) {
        const double* c = q.data() + std::size_t(j) * dim;
        double* out = z.data() + std::size_t(j) * dim;
        for (int a = 0; a < dim; ++a) {
          const double* row = m.data() + std::size_t(a) * dim;
          double s = 0;
          for (int b = 0; b < dim; ++b) s += row[b] * c[b];
          out[a] = s;
        }
      }
      orthonormalize(z);
      q.swap(z);
    }
  for (std::size_t i = 0; i < q.size(); ++i) basis[i] = float(q[i]);
  return used;
}

inline constexpr int max_projection_rank = 256;

//! p[j] = basis_j . s for j < rank (float accumulation, rank <= max_projection_rank), stored as int8 codes c_j =
//! round(p_j / scale) and `scale` = max|p_j| / 127; a non-finite p gives codes 0 and a NaN scale (its score is NaN,
//! and the selector then scores every segment of the pair exactly).
template <class T>
SKV_HOST_DEVICE void project_summary(const float* basis, const T* summary, int dim, int rank, std::int8_t* code,
                                     float* scale) {
  float p[max_projection_rank];
  float amax = 0.f;
  for (int j = 0; j < rank; ++j) {
    const float* b = basis + std::int64_t(j) * dim;
    float s = 0.f;
    for (int d = 0; d < dim; ++d) s += b[d] * to_float(summary[d]);
    p[j] = s;
    const float a = s < 0.f ? -s : s;
    amax = a > amax ? a : (a == a ? amax : a); // NaN propagates
  }
  if (!(amax <= FLT_MAX)) {
    for (int j = 0; j < rank; ++j) code[j] = 0;
    *scale = NAN;
    return;
  }
  const float sc = amax / 127.f, inv = amax > 0.f ? 127.f / amax : 0.f;
  for (int j = 0; j < rank; ++j) {
    float c = ::roundf(p[j] * inv);
    c = c > 127.f ? 127.f : (c < -127.f ? -127.f : c);
    code[j] = std::int8_t(c);
  }
  *scale = sc;
}

//! Projects every pair's (pre-summed) ranking query onto the pair's basis and quantizes it like the segments'
//! projections: codes [pairs, rank] and a scale per pair (NaN where the projection is not finite).
struct project_queries {
  const float* q;     // [pairs, dim]
  const float* basis; // [pairs, rank, dim]
  std::int8_t* code;  // [pairs, rank]
  float* scale;       // [pairs]
  int dim, rank;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    project_summary(basis + p * rank * dim, q + p * dim, dim, rank, code + p * rank, scale + p);
  }
};

//! The projected score of every closed segment, a block of rows of a pair per work item: scale_q * scale_row *
//! (cq . c), the integer dot exact; -inf for a segment without retained tokens (it never competes). With AVX-512
//! VNNI, 16 rows at a time (`vnni_block`, ranks 16, 32 and multiples of 64); with AVX2 (also the AVX-512 builds'
//! other ranks and remainders), 8 rows at a time, 32 code pairs per multiply-add pair as in the sketch's kernel.
SKV_SIMD_CODE_BEGIN
template <int R>
struct score_projections {
  static constexpr int block = 256; //!< rows per work item
  const std::int8_t* qcode;         // [pairs, R]
  const float* qscale;              // [pairs]
  const std::int8_t* code;          // laid out by seg_off, [row, R]
  const float* scale;               // laid out by seg_off
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count;
  float* out; // laid out by seg_off
  std::int64_t blocks;
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    const std::int64_t p = item / blocks, r0 = (item % blocks) * block;
    const std::int64_t r1 = r0 + block < rows[p] ? r0 + block : rows[p];
    const std::int8_t* qc = qcode + p * R;
    const float qs = qscale[p];
    std::int64_t row = seg_off[p] + r0;
    const std::int64_t end = seg_off[p] + r1;
#if defined(SKV_HAVE_AVX512) && defined(__AVX512VNNI__)
    if constexpr (R == 16 || R == 32 || (R % 64 == 0 && R <= 256)) {
      std::int32_t qsum = 0; // the query codes' sum: the c + 128 offset adds 128 qsum to every dot
      for (int d = 0; d < R; ++d) qsum += qc[d];
      for (; row + 16 <= end; row += 16) vnni_block(qc, qsum, qs, row);
    }
#endif
#if defined(__AVX2__) && !defined(__CUDA_ARCH__)
    if constexpr (R % 16 == 0 && R <= 256) { // integer dots below 2^24: exact in float
      for (; row + 8 <= end; row += 8) {
        __m256i acc[8];
        for (int j = 0; j < 8; ++j) {
          const std::int8_t* c = code + (row + j) * R;
          __m256i a = _mm256_setzero_si256();
          for (int d = 0; d < R; d += 32) {
            __m256i cs, qv;
            if (d + 32 <= R) {
              cs = _mm256_loadu_si256((const __m256i*)(c + d));
              qv = _mm256_loadu_si256((const __m256i*)(qc + d));
            } else { // the last 16
              cs = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i*)(c + d)), 0);
              qv = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i*)(qc + d)), 0);
            }
            a = _mm256_add_epi32(a, avx2::dot_i8(cs, qv));
          }
          acc[j] = a;
        }
        // lane j of the result = the sum of acc[j]'s 8 lanes
        const __m256i t0 = _mm256_hadd_epi32(acc[0], acc[1]), t1 = _mm256_hadd_epi32(acc[2], acc[3]);
        const __m256i t2 = _mm256_hadd_epi32(acc[4], acc[5]), t3 = _mm256_hadd_epi32(acc[6], acc[7]);
        const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
        const __m256i dots = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                                              _mm256_permute2x128_si256(u0, u1, 0x31));
        __m256 s = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dots), _mm256_loadu_ps(scale + row)),
                                 _mm256_set1_ps(qs));
        const __m256 empty = _mm256_castsi256_ps(
            _mm256_cmpgt_epi32(_mm256_set1_epi32(1), _mm256_loadu_si256((const __m256i*)(count + row))));
        s = _mm256_blendv_ps(s, _mm256_set1_ps(-INFINITY), empty);
        _mm256_storeu_ps(out + row, s);
      }
    }
#endif
    for (; row < end; ++row) {
      std::int32_t dot = 0;
      for (int d = 0; d < R; ++d) dot += std::int32_t(qc[d]) * std::int32_t(code[row * R + d]);
      out[row] = count[row] > 0 ? float(dot) * scale[row] * qs : -INFINITY;
    }
  }
#if defined(SKV_HAVE_AVX512) && defined(__AVX512VNNI__)
  //! Two vectors of rows in 2^k blocks each (k = 1: 256 bits a row, k = 2: a whole vector) -> one vector of their
  //! rows in half as many blocks each, the row order kept: [P0 + P1, P2 + P3, Q0 + Q1, Q2 + Q3].
  static __m512i halve(__m512i p, __m512i q) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(p, q, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(p, q, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  //! Rows [row, row + 16): 64 code pairs per VNNI multiply-add -- the row codes made unsigned (c ^ 0x80 = c + 128)
  //! against the signed query codes, so each dot carries 128 sum_d cq_d, taken off in integers -- the rows'
  //! partial sums halved down to one 128-bit block per row (`halve`), then the 4 lanes of each block summed by a
  //! transpose tree. The integer dots are the scalar loop's exactly, and so are the scores (same float products).
  void vnni_block(const std::int8_t* qc, std::int32_t qsum, float qs, std::int64_t row) const {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    const std::int8_t* c = code + row * R;
    auto dp = [&](__m512i acc, const std::int8_t* at, __m512i q) {
      return _mm512_dpbusd_epi32(acc, _mm512_xor_si512(_mm512_loadu_si512(at), flip), q);
    };
    __m512i v16[4]; // 4 rows a vector, row m of v16[k] (row 4k + m) in block m
    if constexpr (R == 16) {
      const __m512i q = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)qc));
      for (int k = 0; k < 4; ++k) v16[k] = dp(_mm512_setzero_si512(), c + 64 * k, q);
    } else if constexpr (R == 32) {
      const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)qc));
      __m512i v32[8];
      for (int k = 0; k < 8; ++k) v32[k] = dp(_mm512_setzero_si512(), c + 64 * k, q);
      for (int k = 0; k < 4; ++k) v16[k] = halve(v32[2 * k], v32[2 * k + 1]);
    } else {
      __m512i q[R / 64], v64[16], v32[8];
      for (int k = 0; k < R / 64; ++k) q[k] = _mm512_loadu_si512(qc + 64 * k);
      for (int j = 0; j < 16; ++j) {
        __m512i a = _mm512_setzero_si512();
        for (int k = 0; k < R / 64; ++k) a = dp(a, c + j * R + 64 * k, q[k]);
        v64[j] = a;
      }
      for (int k = 0; k < 8; ++k) v32[k] = halve(v64[2 * k], v64[2 * k + 1]);
      for (int k = 0; k < 4; ++k) v16[k] = halve(v32[2 * k], v32[2 * k + 1]);
    }
    // per block m: [v16[0], v16[1], v16[2], v16[3]]'s row m summed, i.e. lane 4m + k holds row 4k + m
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(v16[0], v16[1]), _mm512_unpackhi_epi32(v16[0], v16[1]));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(v16[2], v16[3]), _mm512_unpackhi_epi32(v16[2], v16[3]));
    const __m512i t = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i dots = _mm512_sub_epi32(_mm512_permutexvar_epi32(order, t), _mm512_set1_epi32(128 * qsum));
    __m512 s = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dots), _mm512_loadu_ps(scale + row)), _mm512_set1_ps(qs));
    const __mmask16 empty = _mm512_cmple_epi32_mask(_mm512_loadu_si512(count + row), _mm512_setzero_si512());
    _mm512_storeu_ps(out + row, _mm512_mask_mov_ps(s, empty, _mm512_set1_ps(-INFINITY)));
  }
#endif
};
SKV_SIMD_CODE_END

} // namespace detail
SKV_NAMESPACE_END
