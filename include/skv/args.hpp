//! @file args.hpp
//! The arguments of the cache's prefill and decode calls (FlashInfer-style packed rows and views), their builders,
//! and the host form of an exported selection.
#pragma once

#include <skv/tensor.hpp>

#include <cstdint>
#include <span>
#include <vector>

SKV_NAMESPACE_BEGIN

//! Prefill inputs of one layer for a ragged batch. Head counts and head_dim come from the views' extents.
template <class Src>
struct prefill_args {
  std::span<const std::int32_t> indptr;    //!< [batch_size + 1] host: rows of sequence b are [indptr[b], indptr[b+1])
  std::span<const std::int32_t> token_ids; //!< [indptr[batch_size]] host: the token id of each packed row
  tensor_view<const Src> k;                //!< [rows, num_kv_heads, head_dim] post-RoPE keys
  tensor_view<const Src> v;                //!< [rows, num_kv_heads, head_dim] values
  tensor_view<const Src> q; //!< [rows, num_q_heads, head_dim] post-RoPE queries: only the last `kv_cache::window()`
                            //!< rows of each sequence are read; may be left empty when `window() == 0`
  int batch_size() const { return indptr.empty() ? 0 : int(indptr.size()) - 1; }
};

//! One decoded token per sequence of the prefilled batch.
template <class Src>
struct decode_args {
  std::span<const std::int32_t> token_ids; //!< [batch_size] host: the new token of each sequence
  tensor_view<const Src> k;                //!< [batch_size, num_kv_heads, head_dim] its post-RoPE key
  tensor_view<const Src> v;                //!< [batch_size, num_kv_heads, head_dim] its value
  tensor_view<const Src> q;                //!< [batch_size, num_q_heads, head_dim] its post-RoPE query
};

//! Prefill arguments over contiguous NHD buffers: `k`, `v` are [rows, num_kv_heads, head_dim], `q` (optional)
//! [rows, num_q_heads, head_dim], rows = indptr.back().
template <class Src>
prefill_args<Src> make_prefill_args(const model_shape& s, std::span<const std::int32_t> indptr,
                                    std::span<const std::int32_t> token_ids, const Src* k, const Src* v,
                                    const Src* q = nullptr) {
  const std::int64_t rows = indptr.empty() ? 0 : indptr.back();
  prefill_args<Src> a;
  a.indptr = indptr;
  a.token_ids = token_ids;
  a.k = nhd(k, rows, s.num_kv_heads, s.head_dim);
  a.v = nhd(v, rows, s.num_kv_heads, s.head_dim);
  if (q != nullptr) a.q = nhd(q, rows, s.num_q_heads, s.head_dim);
  return a;
}

//! Decode arguments over contiguous NHD buffers: `k`, `v` are [batch, num_kv_heads, head_dim], `q`
//! [batch, num_q_heads, head_dim], batch = token_ids.size().
template <class Src>
decode_args<Src> make_decode_args(const model_shape& s, std::span<const std::int32_t> token_ids, const Src* k,
                                  const Src* v, const Src* q) {
  const auto batch = std::int64_t(token_ids.size());
  return {token_ids, nhd(k, batch, s.num_kv_heads, s.head_dim), nhd(v, batch, s.num_kv_heads, s.head_dim),
          nhd(q, batch, s.num_q_heads, s.head_dim)};
}

//! A selection exported to host vectors: CSR over pairs p = sequence * num_kv_heads + kv_head, holding logical
//! token positions (0-based within the sequence), increasing within a pair.
struct selection_csr {
  std::vector<std::int32_t> indptr;  //!< [pairs + 1]
  std::vector<std::int32_t> indices; //!< [indptr.back()]
};

SKV_NAMESPACE_END
