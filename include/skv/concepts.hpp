//! @file concepts.hpp
//! One concept per policy slot, each a flat list of required expressions.
//!
//! A policy is a small struct; the cache makes one instance per layer (constructed from the policy's `options`,
//! the layer index and the layer count) and calls it with that layer's `detail::layer_state`.
#pragma once

#include <skv/detail/layer_state.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>

SKV_NAMESPACE_BEGIN

namespace detail {
//! Stand-ins used to check the concepts: a float layer on either tier, and a key-row accessor.
struct probe_key_rows {
  SKV_HOST_DEVICE const float* operator()(int) const { return nullptr; }
};
struct probe_summarizer {
  static constexpr int vectors = 1;
  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow, int, int, T*) {}
  template <class T>
  SKV_HOST_DEVICE static float score(const float*, int, int, const T*) {
    return 0.f;
  }
};
template <tier Tier>
using probe_layer = layer_state<float, Tier, probe_summarizer>;
} // namespace detail

//! segmenter: how tokens are grouped. Requires
//! - `typename S::options`, `S(const options&)`;
//! - `s.closes(id, length) -> bool`: the open segment now ends with token `id` and holds `length` tokens; true
//!   closes it (the next token opens a new one). Prefill scans the prompt with it; the prompt tail always closes.
//! - `s.validate()`: throws `skv::invalid_argument` for bad options.
template <class S>
concept segmenter = requires(S& s, const S& cs, std::int32_t id, std::int64_t length) {
  typename S::options;
  requires std::constructible_from<S, const typename S::options&>;
  { cs.closes(id, length) } -> std::same_as<bool>;
  { cs.validate() } -> std::same_as<void>;
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

//! selector: which tokens are retained and which are attended. Requires, for a layer `l`:
//! - `typename S::options`, `S(const options&, int layer, int num_layers)`;
//! - `s.validate(shape)`: throws `skv::invalid_argument` for options that cannot work with `shape`;
//! - `s.retain_prefill(l, input, keep)`: fills `keep` with the prompt positions to retain per pair (sorted);
//! - `s.retain_append(l, keep) -> bool`: after a decoded token joined the store; true when `keep` lists the store
//!   indices to keep (the rest is evicted), false when nothing is evicted;
//! - `s.select(l)`: writes `l.sel` for the current decode query (`l.q`, `l.q_partial`);
//! - `s.bytes() -> std::size_t`: fast-tier bytes of the selector's own state;
//! - `S::window`: prompt queries needed at prefill (0 = none), `S::needs_summaries`: whether `select` reads
//!   segment summaries.
template <class S>
concept selector = requires(S& s, const S& cs, detail::probe_layer<tier::fast>& l, detail::index_lists& keep,
                            const detail::prefill_input<float>& in, const model_shape& shape) {
  typename S::options;
  requires std::constructible_from<S, const typename S::options&, int, int>;
  { cs.validate(shape) } -> std::same_as<void>;
  { s.retain_prefill(l, in, keep) } -> std::same_as<void>;
  { s.retain_append(l, keep) } -> std::same_as<bool>;
  { s.select(l) } -> std::same_as<void>;
  { cs.bytes() } -> std::convertible_to<std::size_t>;
  { cs.window() } -> std::convertible_to<int>;
  { S::needs_summaries } -> std::convertible_to<bool>;
};

//! offloader: where retained K/V live and how the selected tokens reach the fast tier. Requires
//! - `O::store_tier`: the tier of the retained tokens;
//! - `typename O::options`, `O(const options&)`;
//! - `o.fetch(l)`: makes `l.fetched` point at the selected tokens' K/V, copying what must cross tiers (and
//!   adding it to `l.moved_to_fast`);
//! - `o.reset()`: forget anything cached from the store (after prefill or eviction);
//! - `o.bytes() -> std::size_t`: fast-tier bytes the offloader holds (e.g. its fetch buffer).
template <class O>
concept offloader = requires {
  { O::store_tier } -> std::convertible_to<tier>;
}
&&requires(O& o, const O& co, detail::probe_layer<O::store_tier>& l) {
  typename O::options;
  requires std::constructible_from<O, const typename O::options&>;
  { o.fetch(l) } -> std::same_as<void>;
  { o.reset() } -> std::same_as<void>;
  { co.bytes() } -> std::convertible_to<std::size_t>;
};

SKV_NAMESPACE_END
