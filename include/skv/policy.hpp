//! @file policy.hpp
//! The contract between the cache and its policies: what each slot is given (read-only views and contexts) and
//! what it hands back (a retention list, a selection, a fetched view). A custom policy needs only these types.
//!
//! Everything per (sequence, KV head) is indexed by the pair p = sequence * num_kv_heads + kv_head. "Device"
//! pointers point into the fast tier (GPU memory on CUDA); "host" spans are ordinary host memory; store pointers
//! point into the store's tier. Data flow of one decode step (docs/design.md draws it):
//!
//!   append: token_store += K/V ──> segmenter closes? ──> segment_table += summary ──> selector.retain_append
//!   select: selector.select(select_context) ──> selection ──> offloader.fetch ──> fetched_view ──> attention
#pragma once

#include <skv/backend/stream.hpp>
#include <skv/backend/tier.hpp>
#include <skv/detail/layer_guide.hpp>
#include <skv/tensor.hpp>

#include <cstdint>
#include <span>
#include <vector>

SKV_NAMESPACE_BEGIN

//! Sizes an engine commits to, so that buffers are allocated once (`kv_cache::reserve`).
struct reservation {
  int max_batch = 1;               //!< sequences per batch
  std::int64_t max_tokens = 0;     //!< tokens per sequence: prompt plus decoded
  std::int64_t max_new_tokens = 0; //!< decoded tokens per sequence (0: up to `max_tokens`)
  std::int64_t max_segments = 0;   //!< closed segments per sequence; 0: the segmenter's bound for `max_tokens`
  std::int64_t max_selected = 0;   //!< set by the cache for its policies: tokens one pair's index list holds at most
  int max_pairs(const model_shape& s) const { return max_batch * s.num_kv_heads; }
  std::int64_t new_tokens() const { return max_new_tokens > 0 ? max_new_tokens : max_tokens; }
};

//! PyramidKV's per-layer capacity (tokens, window included), as the official code computes it: capacities fall
//! linearly from `2 (budget - window) - (budget - window) / beta` at layer 0 to `(budget - window) / beta` at the
//! last layer, plus the window, so the average over layers stays `budget`. PyramidKV's prefill capacities
//! (`keep_window_top::options::pyramid_beta`) and SentenceKV's decode budgets (`segment_topk::options::pyramid_beta`).
inline std::int64_t pyramid_capacity(int layer, int num_layers, std::int64_t budget, int window, int beta) {
  if (beta <= 0 || num_layers <= 1) return budget;
  const std::int64_t base = budget - window, min_num = base / beta, max_num = base * 2 - min_num;
  const std::int64_t steps = (max_num - min_num) / (num_layers - 1);
  return max_num - std::int64_t(layer) * steps + window;
}

//! What a selector or offloader is constructed with (one instance per layer).
struct policy_init {
  int layer = 0;
  int num_layers = 1;
  model_shape shape;
  int value_bytes = 2;             //!< bytes of one stored K/V element (sizeof the cache's storage type)
  tier_resources memory;           //!< allocate from these (`tier_allocator` / `bind`)
  bool sketched_summaries = false; //!< the segment table keeps int8 sketches (`sketched_summarizer`)
  int projection_rank = 0;         //!< values per segment projection (`projected_summarizer`; 0: none)
  //! State the layers of one cache share (cross-layer guidance); owned by the cache, null outside one.
  detail::layer_guide* guide = nullptr;
};

//! The layer a call works on.
struct layer_info {
  int layer = 0;
  int num_layers = 1;
  model_shape shape;
  int batch = 0;             //!< sequences in the prefilled batch
  float softmax_scale = 1.f; //!< the scale of q . k in every softmax (options.softmax_scale or 1/sqrt(head_dim))
  stream_t stream{};         //!< issue device work here (CUDA); ignored on the CPU backends
  int pairs() const { return batch * shape.num_kv_heads; }
  int kv_heads() const { return shape.num_kv_heads; }
  int group() const { return shape.group_size(); }
  int dim() const { return shape.head_dim; }
};

//! Host bookkeeping of one sequence: its segmentation and the open (partial) segment.
struct sequence_state {
  std::int64_t n_tokens = 0;                //!< positions [0, n_tokens) were seen
  std::int64_t prompt_tokens = 0;           //!< ... of which the last prefill gave [0, prompt_tokens)
  std::vector<std::int32_t> segment_begins; //!< first position of each closed segment, increasing
  std::int64_t partial_begin = 0;           //!< first position of the open segment (end of the last closed one)
  int partial_queries = 0;                  //!< decode queries in the open segment, the current one included
  bool closed_last = false;                 //!< the last appended token closed a segment
};

//! A layer's retained tokens: per pair a contiguous region of rows, in increasing position, on tier `where`.
template <class T>
struct store_view {
  tier where = tier::fast;
  int dim = 0;
  const T* k = nullptr;                      //!< [rows, dim] keys (store tier)
  const T* v = nullptr;                      //!< [rows, dim] values (store tier)
  const std::int32_t* position = nullptr;    //!< [rows] logical position of each row (store tier)
  const std::int64_t* offset = nullptr;      //!< [pairs] device: first row of each pair's region
  const std::int32_t* length = nullptr;      //!< [pairs] device: rows in use
  const T* const* k_base = nullptr;          //!< [pairs] device: `k + offset[p] * dim`
  const T* const* v_base = nullptr;          //!< [pairs] device: `v + offset[p] * dim`
  std::span<const std::int64_t> offset_host; //!< [pairs] host copy of `offset`
  std::span<const std::int64_t> length_host; //!< [pairs] host copy of `length`
};

//! The closed segments of a layer and their summaries (fast tier).
template <class T>
struct segment_view {
  int vectors = 0;                         //!< summary vectors per segment (the summarizer's)
  std::int64_t capacity = 0;               //!< rows allocated in all (size buffers laid out like the rows with it)
  const std::int64_t* offset = nullptr;    //!< [pairs] device: first row of each pair
  const std::int32_t* rows = nullptr;      //!< [pairs] device: closed segments
  const std::int32_t* begin = nullptr;     //!< [row] first position of the segment
  const std::int32_t* first = nullptr;     //!< [row] store index of its first retained token
  const std::int32_t* count = nullptr;     //!< [row] its retained tokens (0: no usable summary)
  const T* summary = nullptr;              //!< [row, vectors, dim]
  const std::uint8_t* sketch = nullptr;    //!< [row, dim] int8 codes of the summary + 128 (sketched summarizers)
  const float* sketch_meta = nullptr;      //!< [row, 4] the codes' scale and error terms (detail/sketch.hpp)
  int rank = 0;                            //!< values per projection (projected summarizers; 0: none)
  const std::int8_t* projection = nullptr; //!< [row, rank] each summary projected onto its pair's basis (int8 codes)
  const float* projection_scale = nullptr; //!< [row] ... times this scale
  const float* basis = nullptr;            //!< [pairs, rank, dim] orthonormal rows (detail/projection.hpp)
  const std::int32_t* basis_rows = nullptr; //!< [pairs] device: summaries the basis came from (0: no basis)
  std::span<const std::int64_t> rows_host; //!< [pairs] host copy of `rows`
};

//! The decode queries of the current step, in float and unscaled.
struct query_view {
  const float* current = nullptr;              //!< [batch, num_q_heads, dim] this step's queries
  const float* partial_sum = nullptr;          //!< [batch, num_q_heads, dim] sum over the open segment's queries
  const std::int32_t* partial_count = nullptr; //!< [batch] device: queries in the open segment
};

//! Prefill inputs as the selector sees them.
template <class Src>
struct prefill_context {
  layer_info info;
  tensor_view<const Src> k;                //!< [rows, num_kv_heads, dim] the prompt's keys (engine memory)
  tensor_view<const Src> q;                //!< [rows, num_q_heads, dim] its queries (empty unless window() > 0)
  std::span<const std::int32_t> token_ids; //!< [rows] host: the prompt's token ids, packed like the rows
  std::span<const std::int64_t> seq_row;   //!< [batch] host: packed row of each sequence's position 0
  std::span<const std::int32_t> seq_len;   //!< [batch] host: prompt lengths
  std::span<const sequence_state> seqs;    //!< [batch] the prompt's segmentation
};

//! After a decoded token joined the store (and any segment it closed was summarized).
template <class T>
struct append_context {
  layer_info info;
  store_view<T> store;
  std::span<const sequence_state> seqs;
};

//! What a selector chooses from at a decode step. `Sum` is the cache's summarizer (what ranks `segments`).
template <class T, class Sum>
struct select_context {
  using value_type = T;
  using summarizer_type = Sum;
  layer_info info;
  store_view<T> store;
  segment_view<T> segments; //!< empty (vectors == 0, no rows) unless the cache tracks segments
  query_view query;
  std::span<const sequence_state> seqs;
};

//! A selector's retention output: per pair, increasing indices (prefill: positions in the prompt; append: store
//! indices to keep, the rest is evicted). The selector writes `index` on the device and `length_host` on the host.
struct retention_list {
  std::int64_t stride = 0;             //!< row stride of `index` (>= every length)
  std::int32_t* index = nullptr;       //!< [pairs, stride] device
  std::span<std::int64_t> length_host; //!< [pairs] host
};

//! A selector's choice for one decode step: per pair either every retained token or a list of store indices.
struct selection {
  std::int64_t capacity = 0;     //!< row stride of `index`: the most tokens listed for one pair
  std::int32_t* index = nullptr; //!< [pairs, capacity] device: store indices, increasing
  std::int32_t* count = nullptr; //!< [pairs] device: tokens selected
  std::uint8_t* all = nullptr;   //!< [pairs] device: 1 = rows [0, count) of the store (`index` unused)
  std::span<std::int64_t> bound; //!< [pairs] host: an upper bound of `count`, sizing work without a sync
};

//! An offloader's output: where attention finds each selected token's K/V.
template <class T>
struct fetched_view {
  const T* const* k_all = nullptr;     //!< [pairs] device: rows [0, count) when `all[p]`
  const T* const* v_all = nullptr;     //!< [pairs]
  const T* const* k_sel = nullptr;     //!< [pairs] device: base of the rows named by `slots` otherwise
  const T* const* v_sel = nullptr;     //!< [pairs]
  const std::int32_t* slots = nullptr; //!< [pairs, slot_stride] row (from k_sel[p]) of the j-th selected token
  std::int64_t slot_stride = 0;
};

//! What an observing selector learns after attention: each selected token's softmax weight, summed over the query
//! heads of its KV group, in selection order.
struct attention_weights_view {
  const float* weight = nullptr; //!< [pairs, stride] device
  std::int64_t stride = 0;
};

SKV_NAMESPACE_END
