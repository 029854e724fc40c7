//! @file tensor.hpp
//! What engines hand to skv: raw pointers with extents and strides, and the problem shape.
#pragma once

#include <skv/config.hpp>

#include <cstdint>
#include <type_traits>

SKV_NAMESPACE_BEGIN

//! A strided `[tokens, heads, head_dim]` view (mdspan's `layout_stride` with a contiguous last extent): element
//! (t, h, d) is at `data[t * stride_token + h * stride_head + d]`, strides in elements. Token-major (NHD) and
//! head-major (HND) buffers are both expressible; see `nhd()` / `hnd()`. The cache checks every view's extents
//! against its shape and rejects strides under which two (token, head) rows would overlap. On the CUDA backend
//! `data` is a device pointer.
template <class T>
struct tensor_view {
  T* data = nullptr;             //!< [tokens, heads, head_dim] under the strides below
  std::int64_t tokens = 0;       //!< extent 0
  std::int64_t heads = 0;        //!< extent 1
  std::int64_t head_dim = 0;     //!< extent 2 (contiguous)
  std::int64_t stride_token = 0; //!< elements between consecutive tokens
  std::int64_t stride_head = 0;  //!< elements between consecutive heads

  SKV_HOST_DEVICE T* at(std::int64_t token, std::int64_t head) const {
    return data + token * stride_token + head * stride_head;
  }
  //! True when no two (token, head) rows of `head_dim` elements overlap (mdspan's `is_unique`).
  bool rows_disjoint() const {
    std::int64_t e1 = tokens, s1 = stride_token, e2 = heads, s2 = stride_head;
    if (e1 > 1 && s1 <= 0) return false;
    if (e2 > 1 && s2 <= 0) return false;
    if (e1 <= 1) return e2 <= 1 || s2 >= head_dim;
    if (e2 <= 1) return s1 >= head_dim;
    if (s1 > s2) { // order by stride: the inner extent must fit inside one step of the outer
      const std::int64_t te = e1, ts = s1;
      e1 = e2, s1 = s2, e2 = te, s2 = ts;
    }
    return s1 >= head_dim && s2 >= e1 * s1;
  }
  //! The same view, read-only.
  template <class U = T>
  requires(!std::is_const_v<U>) operator tensor_view<const U>() const {
    return {data, tokens, heads, head_dim, stride_token, stride_head};
  }
};

//! Token-major `[tokens, heads, head_dim]` (FlashInfer's NHD).
template <class T>
tensor_view<T> nhd(T* data, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim) {
  return {data, tokens, heads, head_dim, heads * head_dim, head_dim};
}
//! Head-major `[heads, token_capacity, head_dim]` (FlashInfer's HND) viewed as `[tokens, heads, head_dim]`:
//! `token_capacity` is the buffer's allocated token extent (>= tokens).
template <class T>
tensor_view<T> hnd(T* data, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
                   std::int64_t token_capacity = 0) {
  return {data, tokens, heads, head_dim, head_dim, (token_capacity > 0 ? token_capacity : tokens) * head_dim};
}

//! The attention geometry of one model; identical for every layer.
struct model_shape {
  int num_layers = 1;
  int num_q_heads = 1; //!< query heads; a multiple of `num_kv_heads` (grouped-query attention)
  int num_kv_heads = 1;
  int head_dim = 128; //!< one of `supported_head_dims`
  //! Query heads per KV head. Query head `q` attends with KV head `q / group_size()` (heads of a group are
  //! consecutive, as in Llama's `repeat_kv`).
  int group_size() const { return num_q_heads / num_kv_heads; }
};

//! Head dims with a compiled kernel.
inline constexpr int supported_head_dims[] = {64, 96, 128, 256};
inline constexpr const char* supported_head_dims_text = "64, 96, 128 or 256";

//! Calls `f(std::integral_constant<int, D>{})` for the compiled head dim `D == dim`; false when there is none.
template <class F>
bool dispatch_head_dim(int dim, F&& f) {
  switch (dim) {
  case 64:
    f(std::integral_constant<int, 64>{});
    return true;
  case 96:
    f(std::integral_constant<int, 96>{});
    return true;
  case 128:
    f(std::integral_constant<int, 128>{});
    return true;
  case 256:
    f(std::integral_constant<int, 256>{});
    return true;
  default:
    return false;
  }
}

SKV_NAMESPACE_END
