//! @file selector/segment_topk.hpp
//! Choice that ranks closed segments by their summaries against the decode query and takes whole segments in rank
//! order under the token budget, plus attention sinks and a recent window (SentenceKV, arXiv 2504.00970 §3.3; with
//! min/max summaries and the current query, Quest, arXiv 2406.10774 §3).
//!
//! The ranking query is the mean of the open segment's queries (SentenceKV) or the current query (Quest), scored
//! against every closed segment's summary with the cache's summarizer, summed over the KV head's query group.
//! Selection is per (sequence, KV head). While the open segment holds few queries (`fallback`) or in the first
//! `dense_layers` layers, a pair attends to everything it retains.
#pragma once

#include <skv/concepts.hpp>
#include <skv/detail/dot.hpp>
#include <skv/detail/simd.hpp>
#include <skv/detail/topk.hpp>
#include <skv/error.hpp>
#include <skv/policy.hpp>

#include <algorithm>
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
SKV_SIMD_CODE_BEGIN
template <class Sum, class T, int D>
struct score_segments {
  static constexpr int block = 256; //!< rows per work item
  const float* q;                  // [pairs, group, D]
  const T* summary;                // laid out by seg_off
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* count; // retained tokens of each segment
  float* score;              // laid out by seg_off
  int group;
  std::int64_t blocks; //!< per pair
  SKV_HOST_DEVICE void operator()(std::int64_t item) const {
    const std::int64_t p = item / blocks, r0 = (item % blocks) * block;
    const std::int64_t r1 = r0 + block < rows[p] ? r0 + block : rows[p];
    const float* qp = q + p * group * D; // pair p = b * kv_heads + h owns query heads [h * group, (h + 1) * group)
#if defined(SKV_HAVE_AVX512)
    if constexpr (dot_summarizer<Sum> && D % 16 == 0) {
      if (group == 1) { // a pre-summed query: the non-empty rows, found 16 counts at a time, scored 16 at a time
        std::int32_t live[block];
        int m = 0;
        const std::int64_t lo = seg_off[p] + r0, hi = seg_off[p] + r1;
        std::int64_t row = lo;
        for (; row + 16 <= hi; row += 16) {
          _mm512_storeu_ps(score + row, _mm512_set1_ps(-INFINITY));
          __mmask16 hit = _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(count + row), _mm512_setzero_si512());
          for (; hit != 0; hit &= hit - 1) live[m++] = std::int32_t(row - lo) + __builtin_ctz(hit);
        }
        for (; row < hi; ++row) {
          score[row] = -INFINITY;
          if (count[row] > 0) live[m++] = std::int32_t(row - lo);
        }
        // the rows are scattered after a pre-filter: fetch the next batch's while this one is scored
        constexpr int lines = int((D * sizeof(T) + 63) / 64);
        auto prefetch = [&](int from) {
          for (int i = from; i < m && i < from + 16; ++i)
            for (int l = 0; l < lines; ++l)
              _mm_prefetch(reinterpret_cast<const char*>(summary + (lo + live[i]) * D) + 64 * l, _MM_HINT_T0);
        };
        prefetch(0);
        for (int i = 0; i < m; i += 16) {
          prefetch(i + 16);
          const T* rows16[16];
          float s[16];
          const int n = m - i < 16 ? m - i : 16;
          for (int k = 0; k < n; ++k) rows16[k] = summary + (lo + live[i + k]) * D;
          avx512::dot_rows16<D>(qp, rows16, n, s);
          for (int k = 0; k < n; ++k) score[lo + live[i + k]] = s[k];
        }
        return;
      }
    }
#endif
    for (std::int64_t row = seg_off[p] + r0; row < seg_off[p] + r1; ++row)
      score[row] = count[row] > 0 ? Sum::template score<T>(qp, group, D, summary + row * Sum::vectors * D) : -INFINITY;
  }
};
SKV_SIMD_CODE_END

//! Per pair: sink + top segments under the budget + recent, as increasing store indices (or everything, for dense
//! pairs and pairs that retain no more than the budget).
struct take_segments {
  const float* score;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* first;
  const std::int32_t* count;
  const std::int32_t* length;        //!< [pairs] retained tokens
  const std::int32_t* partial_count; //!< [batch]
  selection out;
  float* heap_score; //!< [pairs, budget - sink - recent + 1]
  std::int32_t* heap_id;
  int kv_heads, sink, recent, threshold;
  bool dense_layer, fallback, whole;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int32_t n = length[p];
    const std::int64_t cap = out.capacity;
    std::int32_t* idx = out.index + p * cap;
    if (dense_layer || (fallback && partial_count[p / kv_heads] <= threshold)) {
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
    // the newest token (this step's own) is always attended, even without a recent window
    const std::int32_t recent_kept = recent > 0 ? recent : 1;
    const std::int32_t head = sink < n ? sink : n;
    const std::int32_t tail = recent_kept < n - head ? recent_kept : n - head;
    const std::int32_t lo = head, hi = n - tail; // segments compete for the tokens in [lo, hi)
    const std::int64_t budget = cap - sink - recent_kept;
    const float* s = score + seg_off[p];
    const std::int32_t* f = first + seg_off[p];
    const std::int32_t* c = count + seg_off[p];
    auto begin_of = [=](std::int32_t i) { return f[i] > lo ? f[i] : lo; };
    auto weight = [=](std::int32_t i) -> std::int64_t {
      const std::int32_t e = f[i] + c[i] < hi ? f[i] + c[i] : hi;
      return e > begin_of(i) ? e - begin_of(i) : 0;
    };
    std::int32_t k = 0;
    for (std::int32_t i = 0; i < head; ++i) idx[k++] = i;
    take_top_units(
        rows[p], scores_at{s}, weight, budget, heap_score + p * (budget + 1), heap_id + p * (budget + 1),
        [&](std::int32_t i, std::int64_t take) {
          for (std::int64_t t = 0; t < take; ++t) idx[k++] = begin_of(i) + std::int32_t(t);
        },
        whole);
    for (std::int32_t i = hi; i < n; ++i) idx[k++] = i;
    out.count[p] = k;
  }
};
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
    //! false (the official rule): segments in rank order until the budget, the last one cut to its first tokens;
    //! true: a segment that does not fit is skipped and the rest of the budget goes to lower-ranked ones that fit,
    //! so no segment is cut (a fact at a sentence's end is not lost to the cut).
    bool whole_segments = false;
  };
  static constexpr bool needs_summaries = true;

  segment_topk(const options& o, const policy_init& init, int budget) : o_(o), init_(init), budget_(budget) {
    memory_resource* mem = init.memory.of(tier::fast);
    for (auto* v : {&query_, &query_sum_, &score_, &heap_score_}) skv::bind(*v, mem);
    skv::bind(heap_id_, mem);
  }

  void validate() const {
    constexpr const char* where = "skv::segment_topk";
    detail::require(o_.sink >= 0, where, "sink", o_.sink, ">= 0");
    detail::require(o_.recent >= 0, where, "recent", o_.recent, ">= 0");
    const int reserved = o_.sink + std::max(o_.recent, 1); // the newest token is always attended
    detail::require(budget_ > reserved, where, "budget", budget_,
                    [&] { return "> sink + max(recent, 1) (" + std::to_string(reserved) + ")"; });
    detail::require(o_.length_threshold >= 0, where, "length_threshold", o_.length_threshold, ">= 0");
    detail::require(o_.dense_layers >= 0, where, "dense_layers", o_.dense_layers, ">= 0");
  }
  const options& opts() const { return o_; }
  std::int64_t max_selected() const { return budget_; }
  std::size_t bytes() const {
    return allocated_bytes(query_) + allocated_bytes(query_sum_) + allocated_bytes(score_) +
           allocated_bytes(heap_score_) + allocated_bytes(heap_id_);
  }
  void reserve(const reservation& r) {
    const std::size_t P = std::size_t(r.max_pairs(init_.shape)), D = std::size_t(init_.shape.head_dim);
    ensure_size(query_, std::size_t(r.max_batch) * init_.shape.num_q_heads * D);
    ensure_size(query_sum_, P * D);
    ensure_size(score_, P * std::size_t(std::max<std::int64_t>(1, r.max_segments)));
    ensure_size(heap_score_, P * std::size_t(heap_width()));
    ensure_size(heap_id_, P * std::size_t(heap_width()));
  }

  template <class T, class Sum>
  void select(const select_context<T, Sum>& ctx, selection& out) {
    const layer_info& li = ctx.info;
    const int P = li.pairs(), H = li.kv_heads(), D = li.dim();
    const bool dense_layer = init_.layer < o_.dense_layers;
    bool all_dense = true;
    for (int p = 0; p < P; ++p) {
      const bool dense = dense_layer || (o_.fallback && ctx.seqs[p / H].partial_queries <= o_.length_threshold);
      const std::int64_t n = ctx.store.length_host[p];
      out.bound[p] = dense ? n : std::min<std::int64_t>(n, budget_);
      all_dense &= dense;
    }
    ensure_size(heap_score_, std::size_t(P) * heap_width());
    ensure_size(heap_id_, std::size_t(P) * heap_width());
    const auto& seg = ctx.segments;
    if (!all_dense) { // dense layers and fallback steps need no scores
      const std::int64_t nq = std::int64_t(li.batch) * li.shape.num_q_heads * D;
      ensure_size(query_, std::size_t(nq));
      parallel_for(std::int64_t(li.batch) * li.shape.num_q_heads,
                   detail::ranking_query{ctx.query.current, ctx.query.partial_sum, ctx.query.partial_count, raw(query_),
                                         li.shape.num_q_heads, D, o_.query},
                   li.stream);
      score(ctx);
    }
    parallel_for(P,
                 detail::take_segments{raw(score_), seg.offset, seg.rows, seg.first, seg.count, ctx.store.length,
                                       ctx.query.partial_count, out, raw(heap_score_), raw(heap_id_), H, o_.sink,
                                       o_.recent, o_.length_threshold, dense_layer, o_.fallback, o_.whole_segments},
                 li.stream);
  }

private:
  std::int64_t heap_width() const { return budget_ - o_.sink - std::max(o_.recent, 1) + 1; }

  //! Scores every closed segment with the ranking query in `query_`.
  template <class T, class Sum>
  void score(const select_context<T, Sum>& ctx) {
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
    std::int64_t max_rows = 0;
    for (auto r : seg.rows_host) max_rows = std::max(max_rows, r);
    if (max_rows == 0) return;
    dispatch_head_dim(D, [&](auto d) {
      using scorer = detail::score_segments<Sum, T, decltype(d)::value>;
      const std::int64_t blocks = (max_rows + scorer::block - 1) / scorer::block;
      parallel_for(std::int64_t(P) * blocks,
                   scorer{qs, seg.summary, seg.offset, seg.rows, seg.count, raw(score_), rows_per_pair, blocks},
                   li.stream);
    });
  }

  options o_;
  policy_init init_;
  int budget_;
  fast_vector<float> query_, query_sum_, score_, heap_score_;
  fast_vector<std::int32_t> heap_id_;
};

SKV_NAMESPACE_END
