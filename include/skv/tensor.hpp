//! @file tensor.hpp
//! What engines hand to skv: raw pointers plus strides, and the problem shape.
#pragma once

#include <skv/config.hpp>

#include <cstdint>
#include <type_traits>

SKV_NAMESPACE_BEGIN

//! A strided [tokens, heads, head_dim] view; `head_dim` is contiguous. Element (t, h, d) is at
//! `data[t * stride_token + h * stride_head + d]` (strides in elements). Token-major (NHD) and head-major (HND)
//! buffers are both expressible; see `nhd()` / `hnd()`. On the CUDA backend `data` is a device pointer.
template <class T>
struct tensor_view {
  T* data = nullptr;             //!< [tokens, heads, head_dim] under the strides below
  std::int64_t stride_token = 0; //!< elements between consecutive tokens
  std::int64_t stride_head = 0;  //!< elements between consecutive heads

  SKV_HOST_DEVICE T* at(std::int64_t token, std::int64_t head) const {
    return data + token * stride_token + head * stride_head;
  }
  //! The same view, read-only.
  template <class U = T>
  requires(!std::is_const_v<U>) operator tensor_view<const U>() const { return {data, stride_token, stride_head}; }
};

//! Token-major `[tokens, heads, head_dim]` (FlashInfer's NHD).
template <class T>
tensor_view<T> nhd(T* data, std::int64_t heads, std::int64_t head_dim) {
  return {data, heads * head_dim, head_dim};
}
//! Head-major `[heads, tokens, head_dim]` (FlashInfer's HND); `tokens` is the allocated token extent.
template <class T>
tensor_view<T> hnd(T* data, std::int64_t tokens, std::int64_t head_dim) {
  return {data, head_dim, tokens * head_dim};
}

//! The attention geometry of one model; identical for every layer.
struct model_shape {
  int num_layers = 1;
  int num_q_heads = 1; //!< query heads; a multiple of `num_kv_heads` (grouped-query attention)
  int num_kv_heads = 1;
  int head_dim = 128;
  int group_size() const { return num_q_heads / num_kv_heads; }
};

SKV_NAMESPACE_END
