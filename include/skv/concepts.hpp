//! @file concepts.hpp
//! One concept per policy slot, each a flat list of required expressions, and the named refinements the cache
//! looks for. The types in the expressions are those of policy.hpp; `T`/`Src` stand for any storage type and are
//! checked with `float`.
#pragma once

#include <skv/policy.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>

SKV_NAMESPACE_BEGIN

namespace detail {
//! A key-row accessor as summarizers receive it: `key(i)` points to the i-th retained key of a segment.
struct probe_key_rows {
  SKV_HOST_DEVICE const float* operator()(int) const { return nullptr; }
};
//! A summarizer to check selectors with.
struct probe_summarizer {
  static constexpr int vectors = 1;
  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow, int, int, T*) {}
  template <class T>
  SKV_HOST_DEVICE static float score(const float*, int, int, const T*) {
    return 0.f;
  }
};
using probe_select_context = select_context<float, probe_summarizer>;
} // namespace detail

//! segmenter: how tokens are grouped. Requires
//! - `typename S::options`, `S(const options&)`;
//! - `s.closes(id, length) -> bool`: the open segment now ends with token `id` and holds `length` tokens; true
//!   closes it (the next token opens a new one). Prefill scans the prompt with it; the prompt tail always closes;
//! - `s.validate()`: throws `skv::invalid_argument` for bad options.
template <class S>
concept segmenter = requires(const S& s, std::int32_t id, std::int64_t length) {
  typename S::options;
  requires std::constructible_from<S, const typename S::options&>;
  { s.closes(id, length) } -> std::same_as<bool>;
  { s.validate() } -> std::same_as<void>;
};

//! A segmenter that bounds its segment count: `s.max_segments(max_tokens) -> int64` closed segments at most in a
//! sequence of `max_tokens` tokens (what `kv_cache::reserve` sizes the segment table with; default: `max_tokens`).
template <class S>
concept bounded_segmenter = segmenter<S> && requires(const S& s, std::int64_t n) {
  { s.max_segments(n) } -> std::convertible_to<std::int64_t>;
};

//! summarizer: the compact representation of a segment. Requires
//! - `S::vectors`: summary vectors per segment (0 = no summary);
//! - `S::summarize<T>(key_row, count, dim, out)` (`SKV_HOST_DEVICE`, static): `key_row(i)` points to the i-th
//!   retained key of the segment (`count` >= 1), `out` receives `vectors * dim` values;
//! - `S::score<T>(q, group, dim, summary) -> float` (`SKV_HOST_DEVICE`, static): relevance of a segment to the
//!   `group` query heads of one KV head (`q`: [group, dim] floats), summed over the group.
template <class S>
concept summarizer = requires(const float* q, const float* summary, float* out, detail::probe_key_rows rows) {
  { S::vectors } -> std::convertible_to<int>;
  { S::template summarize<float>(rows, 1, 1, out) } -> std::same_as<void>;
  { S::template score<float>(q, 1, 1, summary) } -> std::same_as<float>;
};

//! A summarizer whose score is linear in the query (`S::linear_in_query == true`): score(q_1..q_G) =
//! score(q_1 + ... + q_G), so a selector may pre-sum the group's queries and score once per segment.
template <class S>
concept query_linear_summarizer = summarizer<S> && requires {
  requires S::linear_in_query;
};

//! A one-vector summarizer whose score for one (pre-summed) query is the plain dot product with that vector
//! (`S::dot_score == true`), so a CPU kernel may score many segments in one pass (detail/simd.hpp).
template <class S>
concept dot_summarizer = query_linear_summarizer<S> && S::vectors == 1 && requires {
  requires S::dot_score;
};

//! A dot summarizer that also keeps an int8 sketch of each summary (`S::int8_sketch == true`): the segment table
//! stores the codes and an error bound beside the summary, and `segment_topk` uses them to skip the full-precision
//! score of segments that cannot make the budget. The selection stays exactly the same (detail/sketch.hpp).
template <class S>
concept sketched_summarizer = dot_summarizer<S> && requires {
  requires S::int8_sketch;
};

//! A dot summarizer that also keeps a low-rank projection of each summary (`S::projection_divisor`, rank =
//! head_dim / divisor): the segment table keeps a per-(sequence, KV head) basis from the prompt's summaries and each
//! segment's projection, and `segment_topk` ranks by the projected score first and scores exactly only the segments
//! that fill a multiple of the budget by that ranking -- an approximate pre-screen (detail/projection.hpp).
template <class S>
concept projected_summarizer = dot_summarizer<S> && requires {
  requires S::projection_divisor >= 1;
};

//! selector: which tokens are retained and which are attended. Requires
//! - `typename S::options`, `S(const options&, const policy_init&)`, `S::needs_summaries` (whether `select` reads
//!   segment summaries);
//! - `s.validate()`: throws `skv::invalid_argument` for options that cannot work with the shape;
//! - `s.window() -> int`: prompt queries read at prefill (the last ones of each sequence; 0 = none);
//! - `s.retain_prefill(prefill_context<Src>, retention_list&)`: the prompt positions to keep per pair;
//! - `s.retain_append(append_context<T>, retention_list&) -> bool`: after a decoded token joined the store; true
//!   when the list names the store indices to keep (the rest is evicted), false when nothing is evicted;
//! - `s.select(select_context<T, Sum>, selection&)`: what each pair attends this step; fills `bound` on the host;
//! - `s.max_retained(reservation) -> int64`: retained tokens per pair at most, counting a just-appended token;
//! - `s.max_selected() -> int64`: tokens one pair's index list can hold (0: the selector always selects all);
//! - `s.bytes() -> std::size_t`: fast-tier bytes of the selector's own state.
template <class S>
concept selector = requires(S& s, const S& cs, const prefill_context<float>& pc, const append_context<float>& ac,
                            const detail::probe_select_context& sc, retention_list& keep, selection& sel,
                            const reservation& n) {
  typename S::options;
  requires std::constructible_from<S, const typename S::options&, const policy_init&>;
  { S::needs_summaries } -> std::convertible_to<bool>;
  { cs.validate() } -> std::same_as<void>;
  { cs.window() } -> std::convertible_to<int>;
  { s.retain_prefill(pc, keep) } -> std::same_as<void>;
  { s.retain_append(ac, keep) } -> std::same_as<bool>;
  { s.select(sc, sel) } -> std::same_as<void>;
  { cs.max_retained(n) } -> std::convertible_to<std::int64_t>;
  { cs.max_selected() } -> std::convertible_to<std::int64_t>;
  { cs.bytes() } -> std::convertible_to<std::size_t>;
};

//! A selector that learns from attention (H2O): `s.observe(select_context<T, Sum>, const selection&,
//! attention_weights_view)`, called by `kv_cache::step` after attention, once per step.
template <class S>
concept observing_selector = selector<S> &&
    requires(S& s, const detail::probe_select_context& sc, const selection& sel, const attention_weights_view& w) {
  { s.observe(sc, sel, w) } -> std::same_as<void>;
};

//! A selector that may reuse the previous layer's retention (ChunkKV): `s.retain_prefill(ctx, keep, previous)`
//! with `previous` the selector of layer - 1 when that layer was the last one prefilled (state may be moved out).
template <class S>
concept layer_reusing_selector = selector<S> &&
    requires(S& s, S& previous, const prefill_context<float>& pc, retention_list& keep) {
  { s.retain_prefill(pc, keep, previous) } -> std::same_as<void>;
};

//! offloader: where retained K/V live and how the selected tokens reach attention. Requires
//! - `O::store_tier`: the tier of the retained tokens;
//! - `typename O::options`, `O(const options&, const policy_init&)`;
//! - `o.fetch(store_view<T>, const selection&, layer_info) -> fetched_view<T>`: makes the selected tokens
//!   reachable from the fast tier, copying what must cross tiers;
//! - `o.invalidate(layer_info)`: store indices changed meaning (prefill, eviction): forget what was fetched;
//! - `o.take_moved_bytes(layer_info) -> std::size_t`: bytes moved slow -> fast since the last call (may wait);
//! - `o.bytes() -> std::size_t`: fast-tier bytes the offloader holds (e.g. its fetch buffer).
template <class O>
concept offloader = requires {
  { O::store_tier } -> std::convertible_to<tier>;
}
&&requires(O& o, const O& co, const store_view<float>& st, const selection& sel, const layer_info& li) {
  typename O::options;
  requires std::constructible_from<O, const typename O::options&, const policy_init&>;
  { o.fetch(st, sel, li) } -> std::same_as<fetched_view<float>>;
  { o.invalidate(li) } -> std::same_as<void>;
  { o.take_moved_bytes(li) } -> std::convertible_to<std::size_t>;
  { co.bytes() } -> std::convertible_to<std::size_t>;
};

//! A policy (selector, offloader, or a selector's part) that sizes its buffers up front: `p.reserve(reservation)`.
template <class P>
concept reserving_policy = requires(P& p, const reservation& r) {
  { p.reserve(r) } -> std::same_as<void>;
};

SKV_NAMESPACE_END
