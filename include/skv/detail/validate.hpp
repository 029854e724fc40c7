//! @file detail/validate.hpp
//! Input checks shared by the cache's operations: view extents and strides, head geometry, non-finite values.
#pragma once

#include <skv/args.hpp>
#include <skv/backend/stream.hpp>
#include <skv/backend/tier.hpp>
#include <skv/error.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

#include <cmath>
#include <string>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! The cache's shape and softmax scale.
inline void validate_shape(const model_shape& shape, float softmax_scale, const char* where) {
  require(shape.num_layers >= 1, where, "num_layers", shape.num_layers, ">= 1");
  require(shape.num_kv_heads >= 1, where, "num_kv_heads", shape.num_kv_heads, ">= 1");
  require(shape.num_q_heads >= 1 && shape.num_q_heads % shape.num_kv_heads == 0, where, "num_q_heads",
          shape.num_q_heads,
          [&] { return "a positive multiple of num_kv_heads (" + std::to_string(shape.num_kv_heads) + ")"; });
  require(dispatch_head_dim(shape.head_dim, [](auto) {}), where, "head_dim", shape.head_dim, supported_head_dims_text);
  require(softmax_scale >= 0.f && std::isfinite(softmax_scale), where, "softmax_scale", softmax_scale,
          "a finite value >= 0 (0 = 1/sqrt(head_dim))");
}

//! Checks that `x` is a [tokens, heads, dim] view whose rows do not overlap; `name` is the argument ("k", "out").
template <class E>
void check_view(const tensor_view<E>& x, const char* where, const char* name, std::int64_t tokens, int heads, int dim) {
  auto fail = [&](const char* field, auto value, const std::string& allowed) {
    std::string argument(name);
    argument.append(".").append(field);
    throw_invalid(where, argument.c_str(), value, allowed);
  };
  auto shape = [&] {
    std::string s("[");
    s.append(std::to_string(tokens)).append(", ").append(std::to_string(heads)).append(", ");
    return s.append(std::to_string(dim)).append("]");
  };
  if (x.tokens != tokens) fail("tokens", x.tokens, std::to_string(tokens) + " (the view must be " + shape() + ")");
  if (x.heads != heads) fail("heads", x.heads, std::to_string(heads) + " (the view must be " + shape() + ")");
  if (x.head_dim != dim) fail("head_dim", x.head_dim, std::to_string(dim) + " (the cache's model_shape)");
  if (x.data == nullptr && tokens > 0) fail("data", "null", "a pointer to " + shape());
  if (!x.rows_disjoint())
    fail("stride_head", x.stride_head,
         "strides under which no two (token, head) rows of head_dim elements overlap (stride_token = " +
             std::to_string(x.stride_token) +
             "; NHD: stride_head >= head_dim and stride_token >= heads * "
             "stride_head; HND: stride_token >= head_dim and stride_head >= "
             "tokens * stride_token)");
}

template <class Src>
struct non_finite_rows {
  tensor_view<const Src> x;
  std::uint8_t* bad; //!< [tokens * heads]
  int heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const Src* r = x.at(i / heads, i % heads);
    std::uint8_t b = 0;
    for (int d = 0; d < dim; ++d) {
      const float f = to_float(r[d]);
      b |= (f - f) == (f - f) ? 0 : 1; // NaN or Inf make f - f NaN
    }
    bad[i] = b;
  }
};

//! Throws when any element of the [rows, heads, dim] view `x` is NaN or infinite (allocates and waits: a debug aid).
template <class Src>
void check_finite(tensor_view<const Src> x, std::int64_t rows, int heads, int dim, const char* where, const char* name,
                  stream_t s) {
  const std::int64_t n = rows * heads;
  if (n == 0) return;
  fast_vector<std::uint8_t> bad(static_cast<std::size_t>(n));
  parallel_for(n, non_finite_rows<Src>{x, raw(bad), heads, dim}, s);
  std::vector<std::uint8_t> host(static_cast<std::size_t>(n));
  copy_bytes(host.data(), raw(bad), host.size(), s);
  synchronize(s);
  std::int64_t count = 0;
  for (auto b : host) count += b;
  if (count > 0)
    throw_invalid(where, name, std::to_string(count) + " rows with non-finite values",
                  "finite values only (check_values is on)");
}

//! Every check of a prefill's arguments: packed rows, token ids, views; `window` > 0 when queries are read.
template <class Src>
void validate_prefill(const prefill_args<Src>& a, const model_shape& shape, int window, bool check_values,
                      const char* where, stream_t s) {
  require(a.indptr.size() >= 2, where, "indptr.size()", a.indptr.size(), ">= 2 (batch_size + 1, batch_size >= 1)");
  require(a.indptr[0] == 0, where, "indptr[0]", a.indptr[0], "0");
  const int B = a.batch_size();
  for (int b = 0; b < B; ++b)
    if (std::int64_t(a.indptr[b + 1]) - a.indptr[b] < 1)
      throw_invalid(where, ("indptr[" + std::to_string(b + 1) + "] - indptr[" + std::to_string(b) + "]").c_str(),
                    std::int64_t(a.indptr[b + 1]) - a.indptr[b], ">= 1 (an empty prompt cannot be prefilled)");
  const std::int64_t rows = a.indptr[B];
  require(std::int64_t(a.token_ids.size()) == rows, where, "token_ids.size()", a.token_ids.size(),
          [&] { return std::to_string(rows) + " (one id per packed row, indptr[batch_size])"; });
  check_view(a.k, where, "k", rows, shape.num_kv_heads, shape.head_dim);
  check_view(a.v, where, "v", rows, shape.num_kv_heads, shape.head_dim);
  if (window > 0) check_view(a.q, where, "q", rows, shape.num_q_heads, shape.head_dim);
  if (check_values) {
    check_finite(a.k, rows, shape.num_kv_heads, shape.head_dim, where, "k", s);
    check_finite(a.v, rows, shape.num_kv_heads, shape.head_dim, where, "v", s);
    if (window > 0) check_finite(a.q, rows, shape.num_q_heads, shape.head_dim, where, "q", s);
  }
}

//! Every check of a decode step's arguments against the prefilled batch `seqs`.
template <class Src, class Seqs>
void validate_decode(const decode_args<Src>& a, const model_shape& shape, const Seqs& seqs, bool check_values,
                     const char* where, stream_t s) {
  const auto batch = std::int64_t(seqs.size());
  require(std::int64_t(a.token_ids.size()) == batch, where, "token_ids.size()", a.token_ids.size(),
          [&] { return std::to_string(batch) + " (one token per sequence of the prefilled batch)"; });
  check_view(a.k, where, "k", batch, shape.num_kv_heads, shape.head_dim);
  check_view(a.v, where, "v", batch, shape.num_kv_heads, shape.head_dim);
  check_view(a.q, where, "q", batch, shape.num_q_heads, shape.head_dim);
  for (const auto& q : seqs)
    require(q.n_tokens < std::int64_t(INT32_MAX) - 1, where, "length", q.n_tokens, "< 2^31 - 2 tokens per sequence");
  if (check_values) {
    check_finite(a.k, batch, shape.num_kv_heads, shape.head_dim, where, "k", s);
    check_finite(a.v, batch, shape.num_kv_heads, shape.head_dim, where, "v", s);
    check_finite(a.q, batch, shape.num_q_heads, shape.head_dim, where, "q", s);
  }
}

} // namespace detail
SKV_NAMESPACE_END
