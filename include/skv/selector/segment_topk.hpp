//! @file selector/segment_topk.hpp
//! Choice that ranks closed segments by their summaries against the decode query and takes whole segments in rank
//! order under the token budget, plus attention sinks and a recent window (SentenceKV, arXiv 2504.00970 §3.3; with
//! min/max summaries and the current query, Quest, arXiv 2406.10774 §3).
//!
//! The ranking query is the mean of the open segment's queries (SentenceKV) or the current query (Quest), scored
//! against every closed segment's summary with the cache's summarizer, summed over the KV head's query group.
//! Selection is per (sequence, KV head). While the open segment holds few queries (`fallback`) or in the first
//! `dense_layers` layers, a pair attends to everything it retains.
//!
//! With `heavy` > 0 (skv), each pair also keeps, inside τ, a fixed set of the prompt tokens that its last
//! `heavy_window` queries attend to most (SnapKV's window score, chosen once at prefill): tokens that draw attention
//! whatever the query (secondary sinks such as frequent function words) and that no sentence's mean key represents.
#pragma once

#include <skv/concepts.hpp>
#include <skv/detail/dot.hpp>
#include <skv/detail/projection.hpp>
#include <skv/detail/retention_kernels.hpp>
#include <skv/detail/simd.hpp>
#include <skv/detail/sketch.hpp>
#include <skv/detail/topk.hpp>
#include <skv/error.hpp>
#include <skv/policy.hpp>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

SKV_NAMESPACE_BEGIN

//! Which query ranks the segments.
enum class query_mode {
  partial_mean, //!< mean of the open segment's queries (SentenceKV)
  current,      //!< the current decode query (Quest)
  blend,        //!< the sum of both, each scaled to unit length (the sentence's topic and this token's need)
};

//! SentenceKV's official defaults: sink 32, recent 32, fallback while the open sentence has <= 1 query.
struct sentence_kv_choice {
  static constexpr int sink = 32;
  static constexpr int recent = 32;
  static constexpr bool fallback = true;
  static constexpr int length_threshold = 1;
  static constexpr query_mode query = query_mode::partial_mean;
  static constexpr int dense_layers = 0;
};
//! skv's lossless SentenceKV: the official rules, and the first half of the layers rank sentences by layer
//! 2 * layers / 3's estimated attention (cross-layer guidance, `segment_topk::options::guided_layers`).
struct sentence_kv_lossless_choice : sentence_kv_choice {
  static constexpr int guided_layers = -1;
};
//! SentenceKV as the paper's figure describes it: no sink, no recent window, no fallback.
struct sentence_kv_paper_choice : sentence_kv_choice {
  static constexpr int sink = 0;
  static constexpr int recent = 0;
  static constexpr bool fallback = false;
};
//! Quest: pages ranked by the current query, first two layers dense. The recent window of 16 stands for Quest's
//! always-attended current page (the open page has no bounds yet).
struct quest_choice {
  static constexpr int sink = 0;
  static constexpr int recent = 16;
  static constexpr bool fallback = false;
  static constexpr int length_threshold = 1;
  static constexpr query_mode query = query_mode::current;
  static constexpr int dense_layers = 2;
};

namespace detail {
//! `Defaults::guided_layers` where a defaults struct has it, else 0 (no cross-layer guidance).
template <class Defaults>
constexpr int default_guided_layers() {
  if constexpr (requires { Defaults::guided_layers; })
    return Defaults::guided_layers;
  else
    return 0;
}
//! The ranking query of one (sequence, query head) row: the current query, the open segment's mean, or their blend.
struct ranking_query {
  const float* q;
  const float* q_partial;
  const std::int32_t* partial_count; //!< [batch]
  float* out;
  int heads, dim; //!< query heads per sequence, head_dim
  query_mode mode;
  SKV_HOST_DEVICE void operator()(std::int64_t row) const {
    const std::int32_t c = partial_count[row / heads];
    const float inv_c = 1.f / float(c > 0 ? c : 1);
    const float* qc = q + row * dim;
    const float* qp = q_partial + row * dim;
    float* o = out + row * dim;
    if (mode == query_mode::current) {
      for (int d = 0; d < dim; ++d) o[d] = qc[d];
    } else if (mode == query_mode::partial_mean) {
      for (int d = 0; d < dim; ++d) o[d] = qp[d] * inv_c;
    } else { // blend: unit mean + unit current (a zero vector contributes nothing)
      float nc = 0.f, np = 0.f;
      for (int d = 0; d < dim; ++d) {
        nc += qc[d] * qc[d];
        np += qp[d] * qp[d];
      }
      const float sc = nc > 0.f ? 1.f / sqrtf(nc) : 0.f, sp = np > 0.f ? 1.f / sqrtf(np) : 0.f;
      for (int d = 0; d < dim; ++d) o[d] = qc[d] * sc + qp[d] * sp;
    }
  }
};

//! Sums the ranking queries of each pair's query group (for summarizers whose score is linear in the query).
struct sum_group_queries {
  const float* q; // [pairs, group, dim]
  float* out;     // [pairs, dim]
  int group, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / dim, d = i % dim;
    float s = 0.f;
    for (int g = 0; g < group; ++g) s += q[(p * group + g) * dim + d];
    out[i] = s;
  }
};

//! Score of every closed segment of every pair, a block of rows per work item; `group` query rows per pair (1 when
//! pre-summed). A segment without retained tokens never competes (take_segments skips units of weight 0): its
//! summary is not read, and its score is -inf, so that the top-k's passes skip it 16 at a time with the scores
//! below its threshold. After SentenceKV's pre-filter that is most of them (~90% of the sentences at 128K).
//! With `up` (sketched selection), a segment whose score bound `up[row]` is below its pair's threshold `thr[p]`
//! cannot be selected: it is not read either, and scores -inf.
SKV_SIMD_CODE_BEGIN
template <class Sum, class T, int D>
struct score_segments {
  static constexpr int block = 256; //!< rows per work item
  const float* q;                   // [pairs, group, D]
  const T* summary;                 // laid out by seg_off
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count; // retained tokens of each segment
  float* score;              // laid out by seg_off
  int group;
  std::int64_t blocks;        //!< per pair
  const float* up = nullptr;  //!< laid out by seg_off, or null: every segment with retained tokens is scored
  const float* thr = nullptr; //!< [pairs]
  const std::int32_t* done = nullptr; //!< [pairs] or null: a pair marked done is not scored at all
  SKV_HOST_DEVICE bool live(std::int64_t p, std::int64_t row) const {
    return count[row] > 0 && (up == nullptr || !(up[row] < thr[p]));
  }
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    const std::int64_t p = item / blocks, r0 = (item % blocks) * block;
    if (done != nullptr && done[p] != 0) return;
    const std::int64_t r1 = r0 + block < rows[p] ? r0 + block : rows[p];
    const float* qp = q + p * group * D; // pair p = b * kv_heads + h owns query heads [h * group, (h + 1) * group)
#if defined(SKV_HAVE_SIMD)
    if constexpr (dot_summarizer<Sum> && D % simd::lanes == 0) {
      if (group == 1) { // a pre-summed query: the non-empty rows, found `lanes` counts at a time, scored as many
        constexpr int W = simd::lanes;
        std::int32_t rows_live[block];
        int m = 0;
        const std::int64_t lo = seg_off[p] + r0, hi = seg_off[p] + r1;
        std::int64_t row = lo;
        for (; row + W <= hi; row += W) {
          unsigned hit = simd::positive(count + row);
          if (up != nullptr) hit &= simd::not_below(up + row, thr[p]);
          if (hit == (1u << W) - 1u) { // W contiguous live rows (no pre-filter): scored in place, streaming
            const T* rows_w[W];
            for (int k = 0; k < W; ++k) rows_w[k] = summary + (row + k) * D;
            simd::dot_rows<D>(qp, rows_w, W, score + row);
            continue;
          }
          simd::fill(score + row, -INFINITY);
          for (; hit != 0; hit &= hit - 1) rows_live[m++] = std::int32_t(row - lo) + __builtin_ctz(hit);
        }
        for (; row < hi; ++row) {
          score[row] = -INFINITY;
          if (live(p, row)) rows_live[m++] = std::int32_t(row - lo);
        }
        // the rows are scattered after a pre-filter: fetch the next batch's while this one is scored
        constexpr int lines = int((D * sizeof(T) + 63) / 64);
        auto prefetch = [&](int from) {
          for (int i = from; i < m && i < from + W; ++i)
            for (int l = 0; l < lines; ++l)
              _mm_prefetch(reinterpret_cast<const char*>(summary + (lo + rows_live[i]) * D) + 64 * l, _MM_HINT_T0);
        };
        prefetch(0);
        for (int i = 0; i < m; i += W) {
          prefetch(i + W);
          const T* rows_w[W];
          float s[W];
          const int n = m - i < W ? m - i : W;
          for (int k = 0; k < n; ++k) rows_w[k] = summary + (lo + rows_live[i + k]) * D;
          simd::dot_rows<D>(qp, rows_w, n, s);
          for (int k = 0; k < n; ++k) score[lo + rows_live[i + k]] = s[k];
        }
        return;
      }
    }
#endif
    for (std::int64_t row = seg_off[p] + r0; row < seg_off[p] + r1; ++row)
      score[row] = live(p, row) ? Sum::template score<T>(qp, group, D, summary + row * Sum::vectors * D) : -INFINITY;
  }
};
SKV_SIMD_CODE_END

//! One pair's competing units: its closed segments, each weighing the retained tokens it holds in [lo, hi) (the
//! tokens between the sinks and the recent window); `n` retained tokens in all, `cap` selected at most.
struct pair_units {
  const std::int32_t* first;
  const std::int32_t* count;
  std::int32_t head, lo, hi;
  std::int64_t budget; //!< tokens the segments compete for
  SKV_HOST_DEVICE pair_units(const std::int32_t* f, const std::int32_t* c, std::int32_t n, int sink, int recent,
                             std::int64_t cap)
      : first(f), count(c) {
    // the newest token (this step's own) is always attended, even without a recent window
    const std::int32_t recent_kept = recent > 0 ? recent : 1;
    head = sink < n ? sink : n;
    const std::int32_t tail = recent_kept < n - head ? recent_kept : n - head;
    lo = head;
    hi = n - tail;
    budget = cap - sink - recent_kept;
  }
  SKV_HOST_DEVICE std::int32_t begin_of(std::int32_t i) const { return first[i] > lo ? first[i] : lo; }
  SKV_HOST_DEVICE std::int64_t weight(std::int32_t i) const {
    const std::int32_t e = first[i] + count[i] < hi ? first[i] + count[i] : hi;
    return e > begin_of(i) ? e - begin_of(i) : 0;
  }
};

//! The step's rule for one pair: it attends to all it retains, with no index list, in a dense layer or while its
//! sequence's open segment holds at most `threshold` queries (with `fallback`). The host's bounds and the device
//! passes both ask it.
SKV_HOST_DEVICE inline bool attends_all_rule(bool dense_layer, bool fallback, int threshold, std::int32_t partial) {
  return dense_layer || (fallback && partial <= threshold);
}

//! What the per-pair passes over the ranked segments share: where each pair's segments sit and the tokens they
//! hold, this step's rule (a dense layer, a fallback step) and each pair's top-k scratch.
struct pair_segments {
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* first;
  const std::int32_t* count;
  const std::int32_t* length;        //!< [pairs] retained tokens
  const std::int32_t* partial_count; //!< [batch]
  float* scratch_score;              //!< [pairs, scratch_width]
  std::int32_t* scratch_id;
  int kv_heads, sink, recent, threshold;
  bool dense_layer, fallback;
  std::int64_t scratch_width; //!< >= budget - sink - recent + 1 (more for the pre-screen's wider cut)
  const std::int32_t* heavy = nullptr;       //!< [pairs, heavy_stride] or null: each pair's heavy tokens, increasing
  const std::int32_t* heavy_count = nullptr; //!< [pairs]
  std::int64_t heavy_stride = 0;
  SKV_HOST_DEVICE std::int32_t heavy_of(std::int64_t p) const { return heavy == nullptr ? 0 : heavy_count[p]; }
  //! Pair p attends to all it retains, with no index list (a dense layer or a fallback step).
  SKV_HOST_DEVICE bool attends_all(std::int64_t p) const {
    return attends_all_rule(dense_layer, fallback, threshold, partial_count[p / kv_heads]);
  }
  //! ... or selects all it retains because it fits in `cap`.
  SKV_HOST_DEVICE bool takes_everything(std::int64_t p, std::int64_t cap) const {
    return attends_all(p) || length[p] <= cap;
  }
  //! The segments compete for what the sinks, the recent window and the heavy tokens leave of `cap`.
  SKV_HOST_DEVICE pair_units units(std::int64_t p, std::int64_t cap) const {
    return pair_units(first + seg_off[p], count + seg_off[p], length[p], sink, recent, cap - heavy_of(p));
  }
  //! Merges the pair's heavy tokens into its increasing list idx[0, k) (room for k + heavy_of(p) entries), once
  //! each; returns the new length.
  SKV_HOST_DEVICE std::int32_t add_heavy(std::int64_t p, std::int32_t* idx, std::int32_t k) const {
    const std::int32_t m = heavy_of(p);
    if (m == 0) return k;
    const std::int32_t* h = heavy + p * heavy_stride;
    std::int32_t i = k - 1, j = m - 1, w = k + m - 1;
    while (j >= 0) idx[w--] = i >= 0 && idx[i] > h[j] ? idx[i--] : h[j--];
    std::int32_t out = 0;
    for (std::int32_t r = 0; r < k + m; ++r)
      if (out == 0 || idx[r] != idx[out - 1]) idx[out++] = idx[r];
    return out;
  }
  SKV_HOST_DEVICE float* score_scratch(std::int64_t p) const { return scratch_score + p * scratch_width; }
  SKV_HOST_DEVICE std::int32_t* id_scratch(std::int64_t p) const { return scratch_id + p * scratch_width; }
};

//! The int8 sketch of every pair's (pre-summed) ranking query (detail/sketch.hpp).
struct pair_query_sketch {
  const float* q; // [pairs, dim]
  std::int8_t* code;
  float* meta; // [pairs, query_meta_width]
  int dim;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    encode_query(q + p * dim, dim, code + p * dim, meta + p * query_meta_width);
  }
};

#if defined(SKV_HAVE_AVX512) && defined(__AVX512VNNI__)
#  define SKV_SKETCH_SIMD 1
inline constexpr int sketch_simd_step = 64; //!< code bytes per VNNI multiply-add
#elif defined(SKV_HAVE_AVX2)
#  define SKV_SKETCH_SIMD 1
inline constexpr int sketch_simd_step = 32; //!< code bytes per AVX2 multiply-add pair
#endif

//! Sketched selection, pass 1 (a block of rows of a pair per work item): bounds [lo, up] on every closed segment's
//! score from its sketch -- (-inf, +inf) where they are not finite, (-inf, -inf) for a segment without retained
//! tokens (it never competes).
SKV_SIMD_CODE_BEGIN
struct sketch_bounds_rows {
  static constexpr int block = 256; //!< rows per work item
  const std::int8_t* qcode;         // [pairs, dim] the ranking queries' codes
  const float* qmeta;               // [pairs, query_meta_width]
  const std::uint8_t* sketch;
  const float* meta;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count;
  float* lo; // laid out by seg_off
  float* up;
  int dim;
  std::int64_t blocks; //!< per pair
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    const std::int64_t p = item / blocks, r0 = (item % blocks) * block;
    const std::int64_t r1 = r0 + block < rows[p] ? r0 + block : rows[p];
    std::int64_t s = r0;
#if defined(SKV_SKETCH_SIMD)
    if (dim % sketch_simd_step == 0 && dim <= 256) // `lanes` rows at a time; their integer dots stay exact in float
      for (; s + simd::lanes <= r1; s += simd::lanes) {
        const std::int64_t row = seg_off[p] + s;
        unsigned live = simd::positive(count + row);
        if (live == (1u << simd::lanes) - 1u) {
          bounds_block(p, row);
          continue;
        }
        // a pre-filtered table is mostly empty rows: bound only the others
        simd::fill(lo + row, -INFINITY);
        simd::fill(up + row, -INFINITY);
        for (; live != 0; live &= live - 1) bounds1(p, row + __builtin_ctz(live));
      }
#endif
    for (; s < r1; ++s) bounds1(p, seg_off[p] + s);
  }
  SKV_HOST_DEVICE void bounds1(std::int64_t p, std::int64_t row) const {
    if (count[row] <= 0)
      lo[row] = up[row] = -INFINITY;
    else
      sketch_bounds(qcode + p * dim, qmeta + p * query_meta_width, sketch + row * dim, meta + row * sketch_meta_width,
                    dim, lo[row], up[row]);
  }
#if defined(SKV_SKETCH_SIMD) && defined(SKV_HAVE_AVX512)
  //! Rows [row, row + 16): 64 code pairs per VNNI multiply-add (unsigned row codes x signed query codes), the 16
  //! integer dots summed by one transpose tree in float (exact: every partial sum is an integer below 2^24 for
  //! dim <= 256), then the bounds in float, widened by 2^-20 (|a| + b) + 2^-120 -- more than the few float
  //! roundings of a, b and a -+ w (each 2^-24 relative), where sketch_bounds_from works in double.
  void bounds_block(std::int64_t p, std::int64_t row) const {
    const std::int8_t* qc = qcode + p * dim;
    const float* qm = qmeta + p * query_meta_width;
    __m512 acc[16];
    for (int j = 0; j < 16; ++j) {
      const std::uint8_t* c = sketch + (row + j) * dim;
      __m512i a = _mm512_setzero_si512();
      for (int d = 0; d < dim; d += 64)
        a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(c + d), _mm512_loadu_si512(qc + d));
      acc[j] = _mm512_cvtepi32_ps(a);
    }
    // the codes are biased by 128: I = sum_d (c_d + 128) cq_d - 128 sum_d cq_d
    const __m512 dots = _mm512_sub_ps(avx512::sum16(acc), _mm512_set1_ps(128.f * qm[3]));
    const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(sketch_meta_width));
    const float* m = meta + row * sketch_meta_width;
    const __m512 sigma = _mm512_i32gather_ps(at, m, 4), e = _mm512_i32gather_ps(at, m + 1, 4),
                 g = _mm512_i32gather_ps(at, m + 2, 4);
    const __m512 a = _mm512_mul_ps(_mm512_mul_ps(sigma, _mm512_set1_ps(qm[0])), dots);
    const __m512 b = _mm512_fmadd_ps(_mm512_set1_ps(qm[1]), g, _mm512_mul_ps(_mm512_set1_ps(qm[2]), e));
    const __m512 w = _mm512_add_ps(_mm512_fmadd_ps(_mm512_add_ps(_mm512_abs_ps(a), b), _mm512_set1_ps(0x1p-20f), b),
                                   _mm512_set1_ps(0x1p-120f));
    __m512 l = _mm512_sub_ps(a, w), u = _mm512_add_ps(a, w);
    const __mmask16 ok = _mm512_cmp_ps_mask(l, _mm512_set1_ps(-FLT_MAX), _CMP_GT_OQ) &
                         _mm512_cmp_ps_mask(u, _mm512_set1_ps(FLT_MAX), _CMP_LT_OQ);
    l = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), ok, l);
    u = _mm512_mask_mov_ps(_mm512_set1_ps(INFINITY), ok, u);
    // a segment without retained tokens never competes
    const __mmask16 empty = _mm512_cmple_epi32_mask(_mm512_loadu_si512(count + row), _mm512_setzero_si512());
    l = _mm512_mask_mov_ps(l, empty, _mm512_set1_ps(-INFINITY));
    u = _mm512_mask_mov_ps(u, empty, _mm512_set1_ps(-INFINITY));
    _mm512_storeu_ps(lo + row, l);
    _mm512_storeu_ps(up + row, u);
  }
#elif defined(SKV_SKETCH_SIMD)
  //! Rows [row, row + 8): 32 code pairs per AVX2 step -- the biased codes made signed (c = byte ^ 0x80), then
  //! |c| (unsigned) times the query code carrying c's sign, pairs summed to int16 (at most 2 * 127 * 127, no
  //! saturation) and to int32 -- so the integer dots are the VNNI kernel's exactly; the 8 summed by `sum8` in float
  //! (exact below 2^24 for dim <= 256), then the bounds in float, widened as there.
  void bounds_block(std::int64_t p, std::int64_t row) const {
    const std::int8_t* qc = qcode + p * dim;
    const float* qm = qmeta + p * query_meta_width;
    const __m256i flip = _mm256_set1_epi8(char(0x80));
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) {
      const std::uint8_t* c = sketch + (row + j) * dim;
      __m256i a = _mm256_setzero_si256();
      for (int d = 0; d < dim; d += 32) {
        const __m256i cs = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(c + d)), flip);
        a = _mm256_add_epi32(a, avx2::dot_i8(cs, _mm256_loadu_si256((const __m256i*)(qc + d))));
      }
      acc[j] = _mm256_cvtepi32_ps(a);
    }
    const __m256 dots = avx2::sum8(acc);
    const __m256i at =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(sketch_meta_width));
    const float* m = meta + row * sketch_meta_width;
    const __m256 sigma = _mm256_i32gather_ps(m, at, 4), e = _mm256_i32gather_ps(m + 1, at, 4),
                 g = _mm256_i32gather_ps(m + 2, at, 4);
    const __m256 a = _mm256_mul_ps(_mm256_mul_ps(sigma, _mm256_set1_ps(qm[0])), dots);
    const __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(qm[1]), g, _mm256_mul_ps(_mm256_set1_ps(qm[2]), e));
    const __m256 abs_a = _mm256_andnot_ps(_mm256_set1_ps(-0.f), a);
    const __m256 w =
        _mm256_add_ps(_mm256_fmadd_ps(_mm256_add_ps(abs_a, b), _mm256_set1_ps(0x1p-20f), b), _mm256_set1_ps(0x1p-120f));
    __m256 l = _mm256_sub_ps(a, w), u = _mm256_add_ps(a, w);
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(l, _mm256_set1_ps(-FLT_MAX), _CMP_GT_OQ),
                                    _mm256_cmp_ps(u, _mm256_set1_ps(FLT_MAX), _CMP_LT_OQ));
    l = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), l, ok);
    u = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), u, ok);
    // a segment without retained tokens never competes
    const __m256 empty = _mm256_castsi256_ps(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(1), _mm256_loadu_si256((const __m256i*)(count + row))));
    l = _mm256_blendv_ps(l, _mm256_set1_ps(-INFINITY), empty);
    u = _mm256_blendv_ps(u, _mm256_set1_ps(-INFINITY), empty);
    _mm256_storeu_ps(lo + row, l);
    _mm256_storeu_ps(up + row, u);
  }
#endif
};
SKV_SIMD_CODE_END

//! Sketched selection, pass 2 (per pair): where the budget runs out when the segments are ranked by their lower
//! bounds. The segments whose lower bound reaches that score already fill the budget, so the true cut is not below
//! it, and a segment whose upper bound is below it cannot be selected: `thr[p]` = that score (-inf: score every
//! segment; +inf: the pair attends to everything and no score is read).
struct sketch_threshold {
  pair_segments segs;
  const float* lo;
  std::int64_t cap;
  float* thr;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    if (segs.takes_everything(p, cap)) {
      thr[p] = INFINITY;
      return;
    }
    const pair_units u = segs.units(p, cap);
    cut_point cut;
    const bool found = budget_cut(
        segs.rows[p], scores_at{lo + segs.seg_off[p]}, [u](std::int32_t i) { return u.weight(i); }, u.budget,
        budget_scratch(u.budget), segs.score_scratch(p), segs.id_scratch(p), cut);
    thr[p] = found && !cut.all ? cut.score : -INFINITY;
  }
};

//! Per pair: sink + top segments under the budget + recent, as increasing store indices (or everything, for dense
//! pairs and pairs that retain no more than the budget).
struct take_segments {
  pair_segments segs;
  const float* score;
  selection out;
  bool whole;
  //! [pairs] sketched selection's thresholds, or null: where finite, the segments scored -inf were pruned (they
  //! rank below the cut) and the cut is found among the others
  const float* thr = nullptr;
  const std::int32_t* done = nullptr; //!< [pairs] or null: a pair marked done was selected by the pre-screen
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    if (done != nullptr && done[p] != 0) return;
    const std::int32_t n = segs.length[p];
    const std::int64_t cap = out.capacity;
    std::int32_t* idx = out.index + p * cap;
    if (segs.attends_all(p)) {
      out.all[p] = 1;
      out.count[p] = n;
      return;
    }
    out.all[p] = 0;
    if (n <= cap) { // everything retained fits in the budget
      for (std::int32_t i = 0; i < n; ++i) idx[i] = i;
      out.count[p] = n;
      return;
    }
    const pair_units u = segs.units(p, cap);
    std::int32_t k = 0;
    for (std::int32_t i = 0; i < u.head; ++i) idx[k++] = i;
    take_top_units(
        segs.rows[p], scores_at{score + segs.seg_off[p]}, [u](std::int32_t i) { return u.weight(i); }, u.budget,
        segs.score_scratch(p), segs.id_scratch(p),
        [&](std::int32_t i, std::int64_t take) {
          for (std::int64_t t = 0; t < take; ++t) idx[k++] = u.begin_of(i) + std::int32_t(t);
        },
        whole, thr != nullptr && thr[p] > -INFINITY ? -FLT_MAX : -INFINITY);
    for (std::int32_t i = u.hi; i < n; ++i) idx[k++] = i;
    out.count[p] = segs.add_heavy(p, idx, k);
  }
};

//! Cross-layer guidance, the guide layer, per pair: the largest finite score of a segment holding tokens and the
//! softmax normaliser over segments, each weighted by its token count: z = sum count * exp((score - m) * scale).
struct guide_norms {
  const float* score; //!< laid out by seg_off
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count;
  float scale;
  float* mz; //!< [pairs, 2]: m, z
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const float* s = score + seg_off[p];
    const std::int32_t* c = count + seg_off[p];
    float m = -INFINITY;
    for (std::int32_t r = 0; r < rows[p]; ++r)
      if (c[r] > 0 && s[r] > m && s[r] < INFINITY) m = s[r];
    float z = 0.f;
    if (m > -INFINITY)
      for (std::int32_t r = 0; r < rows[p]; ++r)
        if (c[r] > 0 && s[r] > -INFINITY && s[r] < INFINITY) z += float(c[r]) * std::exp((s[r] - m) * scale);
    mz[2 * p] = m;
    mz[2 * p + 1] = z;
  }
};

//! The guide layer, per (sequence, segment row): the segment's share of each KV head's estimated attention,
//! summed over the sequence's heads, into the cache's `layer_guide`.
struct guide_publish {
  const float* score;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count;
  const float* mz;
  float scale;
  int kv_heads;
  std::int64_t width;
  float* mass;              //!< [batch, width]
  std::int32_t* guide_rows; //!< [batch]
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t b = i / width, r = i % width;
    float sum = 0.f;
    for (int h = 0; h < kv_heads; ++h) {
      const std::int64_t p = b * kv_heads + h, row = seg_off[p] + r;
      const float m = mz[2 * p], z = mz[2 * p + 1];
      if (r < rows[p] && count[row] > 0 && z > 0.f && score[row] > -INFINITY && score[row] < INFINITY)
        sum += float(count[row]) * std::exp((score[row] - m) * scale) / z;
    }
    mass[i] = sum;
    if (r == 0) guide_rows[b] = rows[b * kv_heads];
  }
};

//! A guided layer, per (pair, segment row): the guide's mass as the segment's score (a segment closed since the
//! guide published ranks first: above any share), -inf for a segment without retained tokens.
struct guided_scores {
  const float* mass;
  const std::int32_t* guide_rows;
  std::int64_t width;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count;
  int kv_heads;
  std::int64_t max_rows;
  float* score;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, r = i % max_rows;
    if (r >= rows[p]) return;
    const std::int64_t b = p / kv_heads, row = seg_off[p] + r;
    score[row] = count[row] <= 0 ? -INFINITY : r < guide_rows[b] ? mass[b * width + r] : 2.f * float(kv_heads);
  }
};

//! Prefill, per pair: the `heavy` retained tokens in [lo, hi) = [sink, kept - tail) whose prompt rows score highest
//! in the observation window (ties: the earlier token), as increasing store indices.
struct pick_heavy {
  const float* score;             //!< window scores, by prompt row, laid out by score_off
  const std::int64_t* score_off;
  const std::int32_t* row;        //!< [pairs, row_stride] the prompt row of each retained token (retention_list)
  std::int64_t row_stride;
  const std::int32_t* kept;       //!< [pairs] retained tokens
  int sink, tail, heavy;
  std::int32_t* out;              //!< [pairs, heavy]
  std::int32_t* count;            //!< [pairs]
  float* heap_score;              //!< [pairs, heap_cap]
  std::int32_t* heap_id;
  std::int64_t heap_cap;
  struct gathered {
    const float* s;
    const std::int32_t* r;
    SKV_HOST_DEVICE float operator()(std::int32_t i) const { return s[r[i]]; }
  };
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int32_t n = kept[p], lo = sink < n ? sink : n, hi = n - tail > lo ? n - tail : lo;
    std::int32_t* o = out + p * heavy;
    std::int32_t m = 0;
    if (hi - lo <= heavy) {
      for (std::int32_t i = lo; i < hi; ++i) o[m++] = i;
    } else {
      take_top_units(
          hi - lo, gathered{score + score_off[p], row + p * row_stride + lo},
          [](std::int32_t) { return std::int64_t(1); }, heavy, heap_score + p * heap_cap, heap_id + p * heap_cap,
          [&](std::int32_t i, std::int64_t) { o[m++] = lo + i; });
    }
    count[p] = m;
  }
};

//! The projected pre-screen, per pair, after the projected scores are in `approx`: the cut of the segments ranked
//! by them under `factor` times the budget; the segments at or above it (the candidates) scored exactly; the usual
//! take among the candidates only. The pair is then marked `done`. Where the pre-screen does not apply -- the pair
//! attends to everything or fits the budget (thr +inf), its basis came from fewer than `min_basis_rows` summaries,
//! the candidates would be every segment or more than the scratch holds, a projected score is NaN (thr -inf), or
//! ties at the cut overflow the scratch (thr = the cut: the parallel scorer scores the candidates) -- it is left to
//! `score_segments` + `take_segments`.
//! Scratch per pair: `width` candidates, then `budget + 1` entries for the take.
SKV_SIMD_CODE_BEGIN
template <class Sum, class T, int D>
struct prescreen_take {
  pair_segments segs;
  const float* approx; //!< laid out by seg_off: projected scores (-inf without retained tokens)
  const float* q;      //!< [pairs, D] the pre-summed ranking queries
  const T* summary;
  selection out;
  float* thr;
  std::int32_t* done;
  const std::int32_t* basis_rows;
  std::int32_t min_basis_rows;
  double factor;
  std::int64_t width; //!< candidates the scratch holds per pair
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    done[p] = 0;
    const std::int64_t cap = out.capacity;
    if (segs.takes_everything(p, cap)) {
      thr[p] = INFINITY;
      return;
    }
    thr[p] = -INFINITY;
    if (basis_rows[p] < min_basis_rows) return;
    const pair_units u = segs.units(p, cap);
    const std::int32_t rows = segs.rows[p];
    const float* a = approx + segs.seg_off[p];
    auto weight = [u](std::int32_t i) { return u.weight(i); };
    const double scaled = ::ceil(double(u.budget) * factor);
    if (!(scaled < double(width))) return; // more candidates than the scratch holds: everything is scored
    const std::int64_t wide = std::int64_t(scaled);
    float* cs = segs.score_scratch(p);
    std::int32_t* ci = segs.id_scratch(p);
    cut_point cut;
    if (!budget_cut(rows, scores_at{a}, weight, wide, int(width), cs, ci, cut) || cut.all) return;
    const float t = cut.score;
    thr[p] = t;
    int m = 0; // the candidates, in index order
    for (std::int32_t i = next_not_below(scores_at{a}, 0, rows, t); i < rows;
         i = next_not_below(scores_at{a}, i + 1, rows, t)) {
      if (weight(i) <= 0) continue;
      if (m == width) return; // more than the scratch holds (ties at the cut)
      ci[m++] = i;
    }
    score_candidates(p, ci, m, cs);
    const std::int32_t n = segs.length[p];
    std::int32_t* idx = out.index + p * cap;
    std::int32_t k = 0;
    for (std::int32_t i = 0; i < u.head; ++i) idx[k++] = i;
    take_top_units(
        m, scores_at{cs}, [u, ci](std::int32_t c) { return u.weight(ci[c]); }, u.budget, cs + width, ci + width,
        [&](std::int32_t c, std::int64_t take) {
          for (std::int64_t x = 0; x < take; ++x) idx[k++] = u.begin_of(ci[c]) + std::int32_t(x);
        });
    for (std::int32_t i = u.hi; i < n; ++i) idx[k++] = i;
    out.all[p] = 0;
    out.count[p] = segs.add_heavy(p, idx, k);
    done[p] = 1;
  }
  //! cs[c] = the exact score of candidate ci[c] (`lanes` rows at a time where the CPU kernel applies, the next
  //! batch's rows prefetched: they are scattered).
  SKV_HOST_DEVICE void score_candidates(std::int64_t p, const std::int32_t* ci, int m, float* cs) const {
    const T* base = summary + segs.seg_off[p] * D;
    const float* qp = q + p * D;
    int c = 0;
#if defined(SKV_HAVE_SIMD) && !defined(__CUDA_ARCH__)
    if constexpr (dot_summarizer<Sum> && D % simd::lanes == 0) {
      constexpr int W = simd::lanes, lines = int((D * sizeof(T) + 63) / 64);
      auto prefetch = [&](int from) {
        for (int i = from; i < m && i < from + W; ++i)
          for (int l = 0; l < lines; ++l)
            _mm_prefetch(reinterpret_cast<const char*>(base + std::int64_t(ci[i]) * D) + 64 * l, _MM_HINT_T0);
      };
      prefetch(0);
      for (; c < m; c += W) {
        prefetch(c + W);
        const T* rows_w[W];
        const int n = m - c < W ? m - c : W;
        for (int k = 0; k < n; ++k) rows_w[k] = base + std::int64_t(ci[c + k]) * D;
        simd::dot_rows<D>(qp, rows_w, n, cs + c);
      }
      return;
    }
#endif
    for (; c < m; ++c) cs[c] = Sum::template score<T>(qp, 1, D, base + std::int64_t(ci[c]) * D);
  }
};
SKV_SIMD_CODE_END
} // namespace detail

//! Segments are ranked with the cache's summarizer (`Sum::score`), so the same choice serves mean keys (SentenceKV)
//! and min/max bounds (Quest). @tparam Defaults the default option values (sentence_kv_choice, quest_choice, ...)
template <class Defaults = sentence_kv_choice>
class segment_topk {
public:
  struct options {
    int sink = Defaults::sink;          //!< first retained tokens, always selected
    int recent = Defaults::recent;      //!< last retained tokens, always selected (the newest one is, even with 0)
    bool fallback = Defaults::fallback; //!< attend to everything while the open segment is short
    int length_threshold = Defaults::length_threshold; //!< ... i.e. has <= this many queries
    query_mode query = Defaults::query;                //!< which query ranks the segments
    int dense_layers = Defaults::dense_layers;         //!< the first layers attend to everything (Quest: 2)
    int current_layers = 0; //!< skv: the first layers rank by the current query, whatever `query` says
    //! false (the official rule): segments in rank order until the budget, the last one cut to its first tokens;
    //! true: a segment that does not fit is skipped and the rest of the budget goes to lower-ranked ones that fit,
    //! so no segment is cut (a fact at a sentence's end is not lost to the cut).
    bool whole_segments = false;
    //! With a sketched summarizer (`sketched_mean_key_summarizer`): once a pair holds at least this many closed
    //! segments, bound every score from the int8 sketches and read the full summaries only of the segments whose
    //! bound can reach the budget. The selection is the same either way; below it, scoring every summary is
    //! cheaper. Not used with `whole_segments` (that rule may take segments ranked below the cut).
    //! With a projected summarizer (`projected_mean_key_summarizer`), the same line starts the pre-screen.
    int sketch_rows = 256;
    //! Projected summarizers: the segments scored exactly are those that fill `prescreen` times the budget (in
    //! tokens) when ranked by their projected score. Larger: closer to the exact selection, more rows read.
    float prescreen = 2.f;
    //! skv: prompt tokens per pair always selected beside the sinks and the recent window, inside the budget: the
    //! retained ones (past the sinks, before the prompt's last max(recent, heavy_window) tokens) that the prompt's
    //! last `heavy_window` queries attend to most, summed over the window and the KV group (SnapKV's window score),
    //! chosen once at prefill. They catch what a sentence's mean key cannot: single tokens that draw attention
    //! whatever the query (docs/policies.md). 0: off.
    int heavy = 0;
    int heavy_window = 32; //!< prompt queries that choose the heavy tokens
    //! skv: the first `warmup` decode steps after a prefill attend to everything in every layer, as a chunked
    //! prefill of those tokens would (a chat turn's question after a long document is then read exactly; the
    //! selection starts after it). 0: off.
    int warmup = 0;
    //! skv: > 0: decode budgets per layer as PyramidKV's capacities with this β (`pyramid_capacity`, the "window"
    //! being the always-selected sink + recent + heavy tokens): falling linearly with depth, their mean over layers
    //! `budget`, so the fast tier holds what a uniform budget holds. 0: every layer selects `budget` tokens.
    int pyramid_beta = 0;
    //! skv: cross-layer guidance. Layers [0, `guided_layers`) other than `guide_layer` rank segments by the share of
    //! attention that layer `guide_layer` estimated for each at its latest selecting step (a softmax over segments
    //! of its ranking scores, weighted by token counts, summed over its KV heads) instead of by their own summaries:
    //! in a trained model the early layers' mean keys do not find what a later layer's do (docs/policies.md). Every
    //! KV head of a guided layer then takes the same segments, within its own budget; a segment closed since the
    //! guide's step ranks first, and until the guide layer has selected after a prefill a guided layer ranks as
    //! usual. The guide layer scores exactly (no sketch or pre-screen pruning) and also at fallback steps. Layers are
    //! expected to step in order (0, 1, ...) on one stream. 0: off; -1: the first half of the layers. A selector
    //! built outside a `kv_cache` (no `policy_init::guide`) has no layers to share with: off.
    int guided_layers = detail::default_guided_layers<Defaults>();
    int guide_layer = -1; //!< the layer whose ranking the guided layers follow; -1: layer 2 * layers / 3
  };
  static constexpr bool needs_summaries = true;

  segment_topk(const options& o, const policy_init& init, int budget)
      : o_(o), init_(init), mean_budget_(budget),
        budget_(pyramid_capacity(init.layer, init.num_layers, budget, reserved(), o.pyramid_beta)) {
    memory_resource* mem = init.memory.of(tier::fast);
    for (auto* v : {&query_, &query_sum_, &score_, &heap_score_, &lo_, &up_, &thr_, &qmeta_, &qscale_})
      skv::bind(*v, mem);
    skv::bind(qproj_, mem);
    skv::bind(heap_id_, mem);
    skv::bind(done_, mem);
    skv::bind(heavy_, mem);
    skv::bind(heavy_count_, mem);
    skv::bind(qcode_, mem);
    skv::bind(guide_mz_, mem);
  }

  void validate() const {
    constexpr const char* where = "skv::segment_topk";
    detail::require(o_.sink >= 0, where, "sink", o_.sink, ">= 0");
    detail::require(o_.recent >= 0, where, "recent", o_.recent, ">= 0");
    detail::require(o_.heavy >= 0, where, "heavy", o_.heavy, ">= 0 (0 = off)");
    detail::require(o_.heavy == 0 || o_.heavy_window >= 1, where, "heavy_window", o_.heavy_window,
                    ">= 1 when heavy > 0");
    detail::require(mean_budget_ > reserved(), where, "budget", mean_budget_, [&] {
      return "> sink + max(recent, 1) + heavy (" + std::to_string(reserved()) + ")";
    });
    detail::require(o_.pyramid_beta >= 0, where, "pyramid_beta", o_.pyramid_beta, ">= 0 (0 = off)");
    const std::int64_t last =
        pyramid_capacity(init_.num_layers - 1, init_.num_layers, mean_budget_, reserved(), o_.pyramid_beta);
    detail::require(last > reserved(), where, "pyramid_beta", o_.pyramid_beta, [&] {
      return "a value that leaves the last layer more than sink + max(recent, 1) + heavy (" +
             std::to_string(reserved()) + ") tokens (its budget would be " + std::to_string(last) + ")";
    });
    detail::require(o_.length_threshold >= 0, where, "length_threshold", o_.length_threshold, ">= 0");
    detail::require(o_.dense_layers >= 0, where, "dense_layers", o_.dense_layers, ">= 0");
    detail::require(o_.current_layers >= 0, where, "current_layers", o_.current_layers, ">= 0");
    detail::require(o_.warmup >= 0, where, "warmup", o_.warmup, ">= 0 (0 = off)");
    detail::require(o_.guided_layers >= -1 && o_.guided_layers <= init_.num_layers, where, "guided_layers",
                    o_.guided_layers, [&] {
                      return "in [-1, " + std::to_string(init_.num_layers) + "] (0 = off, -1 = the first half)";
                    });
    if (o_.guided_layers != 0) {
      detail::require(o_.guide_layer >= -1 && o_.guide_layer < init_.num_layers, where, "guide_layer",
                      o_.guide_layer, [&] {
                        return "-1 (2 * layers / 3) or " + detail::index_range(init_.num_layers) +
                               " when guided_layers != 0";
                      });
    }
    detail::require(o_.sketch_rows >= 0, where, "sketch_rows", o_.sketch_rows, ">= 0");
    detail::require(o_.prescreen >= 1.f && o_.prescreen <= 1e6f, where, "prescreen", o_.prescreen, "in [1, 1e6]");
  }
  const options& opts() const { return o_; }
  //! This layer's budget: `budget`, or its share of the pyramid (`pyramid_beta`).
  std::int64_t max_selected() const { return budget_; }
  //! Prompt queries read at prefill: the heavy tokens' window (0 without them).
  int window() const { return o_.heavy > 0 ? o_.heavy_window : 0; }

  //! Prefill, after the retention has decided (`keep`: the prompt row of each retained token): chooses each pair's
  //! heavy tokens. Waits for its work.
  template <class Src>
  void prepare(const prefill_context<Src>& ctx, const retention_list& keep) {
    if (guided_layers() > 0 && init_.guide != nullptr) init_.guide->clear(); // a new prompt: the old guide is void
    heavy_pairs_ = 0;
    if (o_.heavy == 0) return;
    const layer_info& li = ctx.info;
    const int P = li.pairs();
    memory_resource* mem = init_.memory.of(tier::fast);
    auto r = detail::window_pooled_scores(ctx, o_.heavy_window, 1, 0, mem);
    std::vector<std::int32_t> kept(std::size_t(P), 0);
    for (int p = 0; p < P; ++p) kept[std::size_t(p)] = std::int32_t(keep.length_host[std::size_t(p)]);
    fast_vector<std::int32_t> d_kept(mem);
    detail::upload(d_kept, kept, li.stream);
    ensure_size(heavy_, std::size_t(P) * std::size_t(o_.heavy));
    ensure_size(heavy_count_, std::size_t(P));
    const std::int64_t heap_cap = detail::budget_scratch(o_.heavy);
    fast_vector<float> hs(std::size_t(P * heap_cap), 0.f, mem);
    fast_vector<std::int32_t> hi(std::size_t(P * heap_cap), 0, mem);
    parallel_for(P,
                 detail::pick_heavy{raw(r.raw_scores), raw(r.d_off), keep.index, keep.stride, raw(d_kept), o_.sink,
                                    std::max({o_.recent, 1, o_.heavy_window}), o_.heavy, raw(heavy_),
                                    raw(heavy_count_), raw(hs), raw(hi), heap_cap},
                 li.stream);
    synchronize(li.stream);
    heavy_pairs_ = P;
  }
  //! The retention evicted tokens: store indices moved, so the heavy tokens are dropped (until the next prefill).
  void forget() { heavy_pairs_ = 0; }
  std::size_t bytes() const {
    return allocated_bytes(query_) + allocated_bytes(query_sum_) + allocated_bytes(score_) +
           allocated_bytes(heap_score_) + allocated_bytes(heap_id_) + allocated_bytes(lo_) + allocated_bytes(up_) +
           allocated_bytes(thr_) + allocated_bytes(qcode_) + allocated_bytes(qmeta_) + allocated_bytes(qproj_) + allocated_bytes(qscale_) +
           allocated_bytes(done_) + allocated_bytes(heavy_) + allocated_bytes(heavy_count_) +
           allocated_bytes(guide_mz_);
  }
  void reserve(const reservation& r) {
    const std::size_t P = std::size_t(r.max_pairs(init_.shape)), D = std::size_t(init_.shape.head_dim);
    ensure_size(query_, std::size_t(r.max_batch) * init_.shape.num_q_heads * D);
    ensure_size(query_sum_, P * D);
    ensure_size(score_, P * std::size_t(std::max<std::int64_t>(1, r.max_segments)));
    if (init_.sketched_summaries) {
      for (auto* v : {&lo_, &up_}) ensure_size(*v, P * std::size_t(std::max<std::int64_t>(1, r.max_segments)));
      ensure_size(thr_, P);
      ensure_size(qcode_, P * D);
      ensure_size(qmeta_, P * detail::query_meta_width);
    }
    if (init_.projection_rank > 0) {
      ensure_size(lo_, P * std::size_t(std::max<std::int64_t>(1, r.max_segments)));
      ensure_size(thr_, P);
      ensure_size(qproj_, P * std::size_t(init_.projection_rank));
      ensure_size(qscale_, P);
      ensure_size(done_, P);
    }
    ensure_size(heap_score_, P * std::size_t(heap_width()));
    ensure_size(heap_id_, P * std::size_t(heap_width()));
    if (o_.heavy > 0) {
      ensure_size(heavy_, P * std::size_t(o_.heavy));
      ensure_size(heavy_count_, P);
    }
    if (is_guide()) {
      ensure_size(guide_mz_, 2 * P);
      const std::size_t rows = std::size_t(std::max<std::int64_t>(1, r.max_segments));
      ensure_size(init_.guide->mass, std::size_t(r.max_batch) * rows);
      ensure_size(init_.guide->rows, std::size_t(r.max_batch));
    }
  }

  template <class T, class Sum>
  void select(const select_context<T, Sum>& ctx, selection& out) {
    const layer_info& li = ctx.info;
    const int P = li.pairs(), H = li.kv_heads(), D = li.dim();
    const bool dense_layer = dense_step(ctx);
    bool all_dense = true;
    for (int p = 0; p < P; ++p) {
      const bool dense =
          detail::attends_all_rule(dense_layer, o_.fallback, o_.length_threshold, ctx.seqs[p / H].partial_queries);
      const std::int64_t n = ctx.store.length_host[p];
      out.bound[p] = dense ? n : std::min<std::int64_t>(n, budget_);
      all_dense &= dense;
    }
    ensure_size(heap_score_, std::size_t(P) * heap_width());
    ensure_size(heap_id_, std::size_t(P) * heap_width());
    pruning pruned;
    const bool guided = !all_dense && is_guided() && init_.guide->batch == li.batch;
    if (guided) {
      guided_scores(ctx);
    } else if (!all_dense || is_guide()) { // dense layers and fallback steps need no scores, except the guide's
      const std::int64_t nq = std::int64_t(li.batch) * li.shape.num_q_heads * D;
      ensure_size(query_, std::size_t(nq));
      parallel_for(std::int64_t(li.batch) * li.shape.num_q_heads,
                   detail::ranking_query{ctx.query.current, ctx.query.partial_sum, ctx.query.partial_count, raw(query_),
                                         li.shape.num_q_heads, D,
                                         init_.layer < o_.current_layers ? query_mode::current : o_.query},
                   li.stream);
      pruned = score(ctx, out, dense_layer, is_guide());
      if (is_guide()) publish_guide(ctx);
    }
    parallel_for(P,
                 detail::take_segments{segments_of(ctx, dense_layer), raw(score_), out, o_.whole_segments, pruned.thr,
                                       pruned.done},
                 li.stream);
  }

private:
  //! The most closed segments any pair holds (host copy; no wait).
  template <class T>
  static std::int64_t most_rows(const segment_view<T>& seg) {
    std::int64_t n = 0;
    for (auto r : seg.rows_host) n = std::max(n, r);
    return n;
  }
  //! Cross-layer guidance with its automatic values resolved.
  int guided_layers() const { return o_.guided_layers == -1 ? init_.num_layers / 2 : o_.guided_layers; }
  int guide_layer() const { return o_.guide_layer == -1 ? 2 * init_.num_layers / 3 : o_.guide_layer; }
  bool is_guide() const { return guided_layers() > 0 && init_.layer == guide_layer() && init_.guide != nullptr; }
  bool is_guided() const {
    return init_.layer < guided_layers() && init_.layer != guide_layer() && init_.guide != nullptr;
  }
  //! The guide layer, after scoring: each segment's share of its estimated attention, into the cache's guide.
  template <class T, class Sum>
  void publish_guide(const select_context<T, Sum>& ctx) {
    const layer_info& li = ctx.info;
    const int P = li.pairs(), H = li.kv_heads();
    const auto& seg = ctx.segments;
    const std::int64_t width = std::max<std::int64_t>(1, most_rows(seg));
    detail::layer_guide& g = *init_.guide;
    ensure_size(guide_mz_, 2 * std::size_t(P));
    ensure_size(g.mass, std::size_t(li.batch) * std::size_t(width));
    ensure_size(g.rows, std::size_t(li.batch));
    // the score sums the group's query heads: their mean logit is score * softmax_scale / group
    const float scale = li.softmax_scale / float(li.group());
    parallel_for(P, detail::guide_norms{raw(score_), seg.offset, seg.rows, seg.count, scale, raw(guide_mz_)},
                 li.stream);
    parallel_for(std::int64_t(li.batch) * width,
                 detail::guide_publish{raw(score_), seg.offset, seg.rows, seg.count, raw(guide_mz_), scale, H, width,
                                       raw(g.mass), raw(g.rows)},
                 li.stream);
    g.width = width;
    g.batch = li.batch;
  }
  //! A guided layer: the guide's shares as this layer's segment scores.
  template <class T, class Sum>
  void guided_scores(const select_context<T, Sum>& ctx) {
    const layer_info& li = ctx.info;
    const auto& seg = ctx.segments;
    ensure_size(score_, std::size_t(std::max<std::int64_t>(1, seg.capacity)));
    const std::int64_t max_rows = most_rows(seg);
    const detail::layer_guide& g = *init_.guide;
    parallel_for(std::int64_t(li.pairs()) * max_rows,
                 detail::guided_scores{raw(g.mass), raw(g.rows), g.width, seg.offset, seg.rows, seg.count,
                                       li.kv_heads(), max_rows, raw(score_)},
                 li.stream);
  }
  //! This step attends to everything in this layer: a dense layer, or a warmup step (the sequences of a batch are
  //! prefilled together, so they share the steps since the prefill).
  template <class T, class Sum>
  bool dense_step(const select_context<T, Sum>& ctx) const {
    if (init_.layer < o_.dense_layers) return true;
    return o_.warmup > 0 && !ctx.seqs.empty() && ctx.seqs[0].n_tokens - ctx.seqs[0].prompt_tokens <= o_.warmup;
  }
  //! What `score` leaves for `take_segments`: the sketch's or the pre-screen's thresholds, and the pairs the
  //! pre-screen has already selected.
  struct pruning {
    const float* thr = nullptr;
    const std::int32_t* done = nullptr;
  };
  //! Tokens always selected: the sinks, the recent window (the newest token at least) and the heavy tokens.
  std::int64_t reserved() const { return std::int64_t(o_.sink) + std::max(o_.recent, 1) + o_.heavy; }
  //! The budgeted top-k's scratch entries per pair.
  std::int64_t take_width() const { return budget_ - o_.sink - std::max(o_.recent, 1) + 1; }
  //! The pre-screen's candidates per pair: `prescreen` times the budget, one more for the cut unit, and 64 for
  //! ties at the cut (at most 16 times the take's scratch; a pair with more is scored by the parallel scorer).
  std::int64_t candidate_width() const {
    if (init_.projection_rank == 0) return 0;
    const double wide = std::ceil(double(o_.prescreen) * double(take_width() - 1)) + 65;
    return std::int64_t(std::min(wide, 16.0 * double(take_width())));
  }
  //! Scratch entries per pair: the pre-screen's candidates, then the take's.
  std::int64_t heap_width() const { return candidate_width() + take_width(); }

  template <class T, class Sum>
  detail::pair_segments segments_of(const select_context<T, Sum>& ctx, bool dense_layer) {
    const auto& seg = ctx.segments;
    const bool heavy = heavy_pairs_ > 0 && heavy_pairs_ == ctx.info.pairs();
    return {seg.offset,       seg.rows,      seg.first,           seg.count, ctx.store.length, ctx.query.partial_count,
            raw(heap_score_), raw(heap_id_), ctx.info.kv_heads(), o_.sink,   o_.recent,        o_.length_threshold,
            dense_layer,      o_.fallback,   heap_width(),        heavy ? raw(heavy_) : nullptr,
            heavy ? raw(heavy_count_) : nullptr,                  o_.heavy};
  }

  //! Scores every closed segment with the ranking query in `query_`; with a sketched summarizer and enough segments,
  //! only those whose sketch bound can reach the budget (the others -inf), the thresholds in `thr_`. With a
  //! projected summarizer and enough segments, the pre-screen selects into `out` the pairs it applies to (`done_`)
  //! and leaves the others' candidates (or all their segments) to the scorer.
  template <class T, class Sum>
  pruning score(const select_context<T, Sum>& ctx, selection& out, bool dense_layer, bool exact = false) {
    const std::int64_t cap = out.capacity;
    const layer_info& li = ctx.info;
    const int P = li.pairs(), G = li.group(), D = li.dim();
    const auto& seg = ctx.segments;
    ensure_size(score_, std::size_t(std::max<std::int64_t>(1, seg.capacity)));
    const float* qs = raw(query_);
    int rows_per_pair = G;
    if constexpr (query_linear_summarizer<Sum>) { // sum the group's queries once instead of once per segment
      ensure_size(query_sum_, std::size_t(P) * D);
      parallel_for(std::int64_t(P) * D, detail::sum_group_queries{raw(query_), raw(query_sum_), G, D}, li.stream);
      qs = raw(query_sum_);
      rows_per_pair = 1;
    }
    const std::int64_t max_rows = most_rows(seg);
    if (max_rows == 0) return {};
    const float *up = nullptr, *thr = nullptr;
    const std::int32_t* done = nullptr;
    if constexpr (sketched_summarizer<Sum>) {
      if (seg.sketch != nullptr && max_rows >= o_.sketch_rows && !o_.whole_segments && !exact) {
        const std::size_t rows = std::size_t(std::max<std::int64_t>(1, seg.capacity));
        for (auto* v : {&lo_, &up_}) ensure_size(*v, rows);
        ensure_size(thr_, std::size_t(P));
        ensure_size(qcode_, std::size_t(P) * D);
        ensure_size(qmeta_, std::size_t(P) * detail::query_meta_width);
        parallel_for(P, detail::pair_query_sketch{qs, raw(qcode_), raw(qmeta_), D}, li.stream);
        using bounder = detail::sketch_bounds_rows;
        const std::int64_t blocks = (max_rows + bounder::block - 1) / bounder::block;
        parallel_for(std::int64_t(P) * blocks,
                     bounder{raw(qcode_), raw(qmeta_), seg.sketch, seg.sketch_meta, seg.offset, seg.rows, seg.count,
                             raw(lo_), raw(up_), D, blocks},
                     li.stream);
        parallel_for(P, detail::sketch_threshold{segments_of(ctx, dense_layer), raw(lo_), cap, raw(thr_)}, li.stream);
        up = raw(up_);
        thr = raw(thr_);
      }
    }
    if constexpr (projected_summarizer<Sum>) {
      if (seg.projection != nullptr && max_rows >= o_.sketch_rows && !o_.whole_segments && !exact) {
        const int R = seg.rank;
        ensure_size(lo_, std::size_t(std::max<std::int64_t>(1, seg.capacity)));
        ensure_size(thr_, std::size_t(P));
        ensure_size(done_, std::size_t(P));
        ensure_size(qproj_, std::size_t(P) * R);
        ensure_size(qscale_, std::size_t(P));
        parallel_for(P, detail::project_queries{qs, seg.basis, raw(qproj_), raw(qscale_), D, R}, li.stream);
        dispatch_head_dim(D, [&](auto d) { // the projected score of every segment, into lo_
          using scorer = detail::score_projections<decltype(d)::value / Sum::projection_divisor>;
          const std::int64_t blocks = (max_rows + scorer::block - 1) / scorer::block;
          parallel_for(std::int64_t(P) * blocks,
                       scorer{raw(qproj_), raw(qscale_), seg.projection, seg.projection_scale, seg.offset, seg.rows,
                              seg.count, raw(lo_), blocks},
                       li.stream);
        });
        dispatch_head_dim(D, [&](auto d) {
          parallel_for(P,
                       detail::prescreen_take<Sum, T, decltype(d)::value>{
                           segments_of(ctx, dense_layer), raw(lo_), qs, seg.summary, out, raw(thr_),
                           raw(done_), seg.basis_rows, 4 * R, double(o_.prescreen), candidate_width()},
                       li.stream);
        });
        up = raw(lo_);
        thr = raw(thr_);
        done = raw(done_);
      }
    }
    dispatch_head_dim(D, [&](auto d) {
      using scorer = detail::score_segments<Sum, T, decltype(d)::value>;
      const std::int64_t blocks = (max_rows + scorer::block - 1) / scorer::block;
      parallel_for(
          std::int64_t(P) * blocks,
          scorer{qs, seg.summary, seg.offset, seg.rows, seg.count, raw(score_), rows_per_pair, blocks, up, thr, done},
          li.stream);
    });
    return {thr, done};
  }

  options o_;
  policy_init init_;
  int mean_budget_;      //!< the budget the cache gave (the mean over layers)
  std::int64_t budget_;  //!< this layer's
  fast_vector<float> query_, query_sum_, score_, heap_score_;
  fast_vector<std::int32_t> heap_id_;
  fast_vector<float> lo_, up_, thr_, qmeta_; //!< sketched selection: bounds per segment, threshold per pair, ...
  fast_vector<std::int8_t> qcode_;           //!< ... and the sketch of each pair's ranking query
  fast_vector<std::int8_t> qproj_;           //!< projected pre-screen: each pair's ranking query projected ...
  fast_vector<float> qscale_;
  fast_vector<std::int32_t> done_;           //!< ... and whether it selected the pair
  fast_vector<std::int32_t> heavy_, heavy_count_; //!< [pairs, heavy], [pairs]: the heavy tokens (store indices)
  int heavy_pairs_ = 0;                           //!< pairs they were chosen for at prefill (0: none)
  fast_vector<float> guide_mz_;                   //!< the guide layer: [pairs, 2] softmax max and normaliser
};

SKV_NAMESPACE_END
