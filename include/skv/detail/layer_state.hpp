//! @file detail/layer_state.hpp
//! Everything the cache keeps for one layer, as the policies see it.
//!
//! The cache owns one `layer_state` per layer and hands it to each policy; a policy reads what it needs and
//! writes only its own outputs (the selector: the retention and selection lists; the offloader: the fetch
//! result). Pair p = sequence b * kv_heads + KV head h indexes everything per (sequence, KV head).
#pragma once

#include <skv/detail/token_store.hpp>
#include <skv/tensor.hpp>

#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Host bookkeeping of one sequence.
struct sequence_meta {
  std::int64_t n_tokens = 0;           //!< logical length: positions [0, n_tokens) were seen
  std::vector<std::int32_t> seg_begin; //!< first position of each closed segment, increasing
  std::int64_t partial_begin = 0;      //!< first position of the open (partial) segment
  int partial_queries = 0;             //!< decode queries accumulated in the partial segment
  bool closed_last = false;            //!< the last appended token closed a segment
};

//! Closed segments per pair: where each one's retained tokens sit in the store, and its summary.
template <class T>
struct segment_table {
  int vectors = 0;                 //!< summary vectors per segment
  ragged_layout layout;            //!< rows = closed segments of the pair's sequence
  fast_vector<std::int32_t> first; //!< store index of the segment's first retained token
  fast_vector<std::int32_t> count; //!< retained tokens in the segment (0: no usable summary)
  fast_vector<T> summary;          //!< [rows, vectors, dim]
  std::size_t bytes() const {
    return allocated_bytes(first) + allocated_bytes(count) + allocated_bytes(summary) +
           allocated_bytes(layout.d_offset) + allocated_bytes(layout.d_length);
  }
};

//! A list of token indices per pair, CSR (prefill: positions; append: store indices). Kept sorted per pair.
struct index_lists {
  std::vector<std::int64_t> offset;   //!< [pairs + 1] host copy
  fast_vector<std::int64_t> d_offset; //!< [pairs + 1]
  fast_vector<std::int32_t> index;    //!< [offset.back()]
  void upload() { d_offset.assign(offset.begin(), offset.end()); }
};

//! The current selection: per pair either "every retained token" or up to `capacity` store indices.
struct selection_state {
  std::int64_t capacity = 0;            //!< row stride of `index`
  fast_vector<std::int32_t> index;      //!< [pairs, capacity] store indices, increasing
  fast_vector<std::int32_t> count;      //!< [pairs] selected tokens
  fast_vector<std::uint8_t> all;        //!< [pairs] 1: all retained tokens (index unused)
  std::vector<std::int32_t> count_host; //!< host copies, for sizes and the ledger
  std::vector<std::uint8_t> all_host;
  bool valid = false; //!< a selection was made since the last append
  std::size_t bytes() const { return allocated_bytes(index) + allocated_bytes(count) + allocated_bytes(all); }
  std::int64_t nnz() const {
    std::int64_t n = 0;
    for (auto c : count_host) n += c;
    return n;
  }
  void download() {
    count_host.resize(count.size());
    all_host.resize(all.size());
    thrust::copy(count.begin(), count.end(), count_host.begin());
    thrust::copy(all.begin(), all.end(), all_host.begin());
  }
};

//! Where attention finds the selected tokens' K/V: per pair a region base and, unless `all`, a row list.
template <class T>
struct fetch_result {
  fast_vector<const T*> k_base;        //!< [pairs]
  fast_vector<const T*> v_base;        //!< [pairs]
  const std::int32_t* slots = nullptr; //!< [pairs, slot_stride] rows within the regions
  std::int64_t slot_stride = 0;
};

//! Prefill inputs as policies see them: the engine's views plus per-sequence geometry.
template <class Src>
struct prefill_input {
  tensor_view<const Src> k, v, q;    //!< packed rows; q may be null when no policy needs queries
  std::vector<std::int64_t> seq_row; //!< [batch] packed row of position 0
  std::vector<std::int32_t> seq_len; //!< [batch]
};

//! One layer of a cache whose retained tokens live on tier `StoreTier`, summarized by `Sum`.
template <class T, tier StoreTier, class Sum>
struct layer_state {
  using value_type = T;
  using summarizer_type = Sum;
  static constexpr tier store_tier = StoreTier;

  int layer = 0, num_layers = 1;
  model_shape shape;
  int batch = 0;
  bool prefilled = false;
  std::vector<sequence_meta> seqs;
  token_store<T, StoreTier> store;
  std::uint64_t store_epoch = 0; //!< bumped whenever store indices change meaning (eviction)
  segment_table<T> segs;
  fast_vector<float> q;         //!< [batch, q_heads, dim] the current decode query
  fast_vector<float> q_partial; //!< [batch, q_heads, dim] sum of the partial segment's queries
  selection_state sel;
  fetch_result<T> fetched;
  std::size_t moved_to_fast = 0, moved_to_slow = 0;
  //! During prefill only: what the previous layer retained (positions), and its prompt lengths, when the engine
  //! prefilled that layer just before this one (ChunkKV's layer-wise index reuse); null otherwise.
  const index_lists* previous_keep = nullptr;
  std::vector<std::int32_t> previous_keep_lengths;

  int pairs() const { return batch * shape.num_kv_heads; }
  int kv_heads() const { return shape.num_kv_heads; }
  int dim() const { return shape.head_dim; }
  int group() const { return shape.group_size(); }
  std::size_t token_bytes() const { return std::size_t(shape.head_dim) * 2 * sizeof(T) + sizeof(std::int32_t); }
};

} // namespace detail
SKV_NAMESPACE_END
