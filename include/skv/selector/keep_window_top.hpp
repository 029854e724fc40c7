//! @file selector/keep_window_top.hpp
//! Prefill compression by observation-window attention (SnapKV, arXiv 2404.14469 §4.2): score every prompt token by
//! the attention the last `window` prompt queries give it (summed over the window and the KV head's query group),
//! smooth with a max-pool, keep the top units per (sequence, KV head) plus the window itself. One retention for:
//! - SnapKV: tokens, max-pool 7, `budget` tokens kept;
//! - PyramidKV (arXiv 2406.02069): the same with budgets falling linearly with depth (`pyramid_beta`);
//! - ChunkKV (arXiv 2502.00299): whole segments (fixed chunks) ranked by summed window attention, and the kept
//!   positions reused by adjacent layers (`reuse_depth`);
//! - SentenceKV's pre-filter (arXiv 2504.00970 §3.2): SnapKV keeping `factor` × budget tokens (r = 3).
//! Decode tokens are appended and never evicted (as in the official code of each).
#pragma once

#include <skv/detail/retention_kernels.hpp>
#include <skv/error.hpp>
#include <skv/policy.hpp>

#include <algorithm>
#include <string>
#include <vector>

SKV_NAMESPACE_BEGIN

//! The unit a retention ranks: single tokens, or the segmenter's segments (kept whole, the last one cut).
enum class granularity { token, segment };

//! SnapKV's defaults (window 32, max-pool 7, keep `budget`).
struct snap_kv_window {
  static constexpr float factor = 1.f;
  static constexpr int kernel = 7;
  static constexpr granularity unit = granularity::token;
  static constexpr int pyramid_beta = 0;
  static constexpr int reuse_depth = 1;
};
//! PyramidKV: SnapKV's scoring with per-layer budgets from β = 20 (same average).
struct pyramid_kv_window : snap_kv_window {
  static constexpr int pyramid_beta = 20;
};
//! ChunkKV: segments (chunks) by summed window attention (no pooling), kept positions reused by layer pairs.
struct chunk_kv_window : snap_kv_window {
  static constexpr int kernel = 1;
  static constexpr granularity unit = granularity::segment;
  static constexpr int reuse_depth = 2;
};
//! SentenceKV's pre-filter: SnapKV keeping r · τ tokens, r = 3 (the official README and LongBench scripts).
struct sentence_kv_prefilter : snap_kv_window {
  static constexpr float factor = 3.f;
};

//! Keeps `factor` x budget tokens per (sequence, KV head): the top tokens (or segments) by observation-window
//! attention, plus the window. @tparam Defaults the default option values (snap_kv_window, sentence_kv_prefilter, ...)
template <class Defaults = snap_kv_window>
class keep_window_top {
public:
  struct options {
    float factor = Defaults::factor;   //!< keeps factor × budget tokens per (sequence, KV head), window included
    int window = 32;                   //!< observation window w: the last w prompt queries (kept)
    int kernel = Defaults::kernel;     //!< max-pool kernel (odd; 1 = no pooling)
    granularity unit = Defaults::unit; //!< rank tokens, or whole segments
    int pyramid_beta = Defaults::pyramid_beta; //!< > 0: PyramidKV per-layer budgets with this β (0 = off)
    int reuse_depth = Defaults::reuse_depth;   //!< layers sharing one set of kept positions (1 = no reuse)
    std::vector<int> head_budgets;             //!< optional per-KV-head budgets (override the selector's budget)
  };

  keep_window_top(const options& o, const policy_init& init, int budget)
      : o_(o), init_(init), budget_(budget), saved_(init.memory.of(tier::fast)) {}

  void validate() const {
    constexpr const char* where = "skv::keep_window_top";
    detail::require(o_.window >= 1 && o_.window <= 128, where, "window", o_.window, "[1, 128]");
    detail::require(o_.kernel >= 1 && o_.kernel % 2 == 1, where, "kernel", o_.kernel, "an odd number >= 1");
    detail::require(o_.factor >= 1.f, where, "factor", o_.factor, ">= 1 (keeps factor x budget tokens)");
    detail::require(o_.pyramid_beta >= 0, where, "pyramid_beta", o_.pyramid_beta, ">= 0 (0 = off)");
    detail::require(o_.reuse_depth >= 1, where, "reuse_depth", o_.reuse_depth, ">= 1 (1 = no reuse)");
    const int heads = init_.shape.num_kv_heads;
    detail::require(o_.head_budgets.empty() || int(o_.head_budgets.size()) == heads, where, "head_budgets.size()",
                    o_.head_budgets.size(), [&] { return "0 or num_kv_heads (" + std::to_string(heads) + ")"; });
    for (int h = 0; h < heads; ++h) {
      const std::int64_t base = kept(h);
      const char* arg = o_.head_budgets.empty() ? "budget" : "head_budgets[h]";
      const int value = o_.head_budgets.empty() ? budget_ : o_.head_budgets[h];
      detail::require(base > o_.window, where, arg, value, [&] {
        return "> window (" + std::to_string(o_.window) + ") once multiplied by factor (" + std::to_string(o_.factor) +
               ")";
      });
      const std::int64_t last =
          pyramid_capacity(init_.num_layers - 1, init_.num_layers, base, o_.window, o_.pyramid_beta);
      detail::require(last > o_.window, where, "pyramid_beta", o_.pyramid_beta, [&] {
        return "a value that leaves the last layer more than the window (its capacity would be " +
               std::to_string(last) + ")";
      });
    }
  }
  int window() const { return o_.window; }
  const options& opts() const { return o_; }
  //! Tokens kept at prefill for KV head `head` of this layer, window included.
  std::int64_t capacity(int head) const {
    return pyramid_capacity(init_.layer, init_.num_layers, kept(head), o_.window, o_.pyramid_beta);
  }
  std::int64_t max_retained(const reservation& r) const {
    std::int64_t cap = 0;
    for (int h = 0; h < init_.shape.num_kv_heads; ++h) cap = std::max(cap, capacity(h));
    return std::min(r.max_tokens, cap + r.new_tokens());
  }
  std::size_t bytes() const { return allocated_bytes(saved_); }
  //! Whether this layer reuses the previous layer's kept positions (ChunkKV).
  bool reuses() const { return o_.reuse_depth > 1 && init_.layer % o_.reuse_depth != 0; }

  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep) {
    const layer_info& li = ctx.info;
    const int P = li.pairs(), H = li.kv_heads();
    bool fits = true;
    for (int p = 0; p < P; ++p) fits &= ctx.seq_len[p / H] <= capacity(p % H);
    memory_resource* mem = init_.memory.of(tier::fast);
    if (fits) {
      detail::retain_whole_prompts(ctx, keep, mem);
    } else {
      auto r = detail::window_pooled_scores(ctx, o_.window, o_.kernel, o_.window, mem);
      const float* score = raw(o_.kernel > 1 ? r.pooled : r.raw_scores);
      std::vector<std::int64_t> k(P);
      std::int64_t heap_cap = 1;
      for (int p = 0; p < P; ++p) {
        const std::int64_t n = r.n[p], cap = capacity(p % H), tail = n - r.limit[p];
        k[p] = n <= cap ? r.limit[p] : cap - tail;
        heap_cap = std::max<std::int64_t>(heap_cap, k[p] + 1);
        keep.length_host[p] = std::min(n, cap);
      }
      fast_vector<std::int64_t> d_k(mem);
      detail::upload(d_k, k, li.stream);
      fast_vector<float> hs(std::size_t(P * heap_cap), 0.f, mem);
      fast_vector<std::int32_t> hi(std::size_t(P * heap_cap), 0, mem);
      if (o_.unit == granularity::token) {
        parallel_for(P,
                     detail::keep_top_tokens{score, raw(r.d_off), raw(r.d_limit), raw(r.d_n), raw(d_k), keep.index,
                                             keep.stride, raw(hs), raw(hi), heap_cap},
                     li.stream);
      } else {
        keep_segments(ctx, r, score, d_k, keep, hs, hi, heap_cap, mem);
      }
      synchronize(li.stream);
    }
    if (feeds_next()) save(ctx, keep);
  }

  //! ChunkKV's layer-wise reuse: this layer keeps what `previous` (layer - 1) kept when it was prefilled with the
  //! same prompts (same lengths and token ids) just before; the positions move on to the next layer of the group.
  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep, keep_window_top& previous) {
    const bool same = reuses() && previous.saved_valid_ && previous.saved_seq_len_.size() == ctx.seq_len.size() &&
                      std::equal(ctx.seq_len.begin(), ctx.seq_len.end(), previous.saved_seq_len_.begin()) &&
                      previous.saved_prompt_ == prompt_hash(ctx.token_ids) && previous.saved_stride_ == keep.stride;
    if (!same) {
      previous.drop_saved();
      retain_prefill(ctx, keep);
      return;
    }
    copy_bytes(keep.index, raw(previous.saved_), previous.saved_.size() * sizeof(std::int32_t), ctx.info.stream);
    std::copy(previous.saved_len_.begin(), previous.saved_len_.end(), keep.length_host.begin());
    synchronize(ctx.info.stream);
    if (feeds_next()) {
      saved_.swap(previous.saved_);
      saved_len_.swap(previous.saved_len_);
      saved_seq_len_.swap(previous.saved_seq_len_);
      saved_stride_ = previous.saved_stride_;
      saved_prompt_ = previous.saved_prompt_;
      saved_valid_ = true;
    }
    previous.drop_saved();
  }

  template <class T>
  bool retain_append(const append_context<T>&, retention_list&) {
    return false;
  }

private:
  std::int64_t kept(int head) const {
    const int b = o_.head_budgets.empty() ? budget_ : o_.head_budgets[head];
    return std::int64_t(o_.factor * float(b));
  }
  bool feeds_next() const {
    return o_.reuse_depth > 1 && (init_.layer + 1) % o_.reuse_depth != 0 && init_.layer + 1 < init_.num_layers;
  }

  template <class Src>
  void keep_segments(const prefill_context<Src>& ctx, const detail::window_score_result& r, const float* score,
                     const fast_vector<std::int64_t>& d_k, retention_list& keep, fast_vector<float>& hs,
                     fast_vector<std::int32_t>& hi, std::int64_t heap_cap, memory_resource* mem) {
    const layer_info& li = ctx.info;
    const int P = li.pairs(), H = li.kv_heads();
    std::vector<std::int32_t> segs(li.batch), begins;
    std::vector<std::int64_t> begin_off(li.batch);
    std::int64_t max_segs = 1;
    for (int b = 0; b < li.batch; ++b) {
      begin_off[b] = std::int64_t(begins.size());
      const auto& sb = ctx.seqs[b].segment_begins;
      begins.insert(begins.end(), sb.begin(), sb.end());
      segs[b] = std::int32_t(sb.size());
      max_segs = std::max<std::int64_t>(max_segs, segs[b]);
    }
    fast_vector<std::int32_t> d_begins(mem), d_segs(mem);
    fast_vector<std::int64_t> d_begin_off(mem);
    detail::upload(d_begins, begins, li.stream);
    detail::upload(d_segs, segs, li.stream);
    detail::upload(d_begin_off, begin_off, li.stream);
    fast_vector<float> seg_score(std::size_t(P * max_segs), 0.f, mem);
    fast_vector<std::int32_t> seg_weight(std::size_t(P * max_segs), 0, mem);
    parallel_for(std::int64_t(P) * max_segs,
                 detail::segment_window_scores{score, raw(r.d_off), raw(r.d_limit), raw(d_begins), raw(d_begin_off),
                                               raw(d_segs), raw(r.d_n), raw(seg_score), raw(seg_weight), H, max_segs},
                 li.stream);
    parallel_for(P,
                 detail::keep_top_segments{raw(seg_score), raw(seg_weight), raw(d_begins), raw(d_begin_off),
                                           raw(d_segs), raw(r.d_limit), raw(r.d_n), raw(d_k), keep.index, keep.stride,
                                           raw(hs), raw(hi), heap_cap, max_segs, H},
                 li.stream);
    synchronize(li.stream);
  }

  template <class Src>
  void save(const prefill_context<Src>& ctx, const retention_list& keep) {
    const std::size_t n = std::size_t(ctx.info.pairs()) * keep.stride;
    resize(saved_, n);
    copy_bytes(raw(saved_), keep.index, n * sizeof(std::int32_t), ctx.info.stream);
    saved_len_.assign(keep.length_host.begin(), keep.length_host.end());
    saved_seq_len_.assign(ctx.seq_len.begin(), ctx.seq_len.end());
    saved_prompt_ = prompt_hash(ctx.token_ids);
    saved_stride_ = keep.stride;
    saved_valid_ = true;
    synchronize(ctx.info.stream);
  }
  //! FNV-1a over the token ids: the same prompts (with the same lengths) in the layer below.
  static std::uint64_t prompt_hash(std::span<const std::int32_t> ids) {
    std::uint64_t h = 1469598103934665603ull;
    for (auto id : ids) h = (h ^ std::uint64_t(std::uint32_t(id))) * 1099511628211ull;
    return h;
  }
  void drop_saved() {
    release(saved_);
    saved_valid_ = false;
  }

  options o_;
  policy_init init_;
  int budget_;
  fast_vector<std::int32_t> saved_; //!< the kept positions handed to the next layer (ChunkKV's reuse)
  std::vector<std::int64_t> saved_len_;
  std::vector<std::int32_t> saved_seq_len_;
  std::int64_t saved_stride_ = 0;
  std::uint64_t saved_prompt_ = 0;
  bool saved_valid_ = false;
};

SKV_NAMESPACE_END
