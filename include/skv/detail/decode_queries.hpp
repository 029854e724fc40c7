//! @file detail/decode_queries.hpp
//! The decode queries of a layer in float: the current step's, and their running sum over the open segment
//! (SentenceKV's partial-sentence query, methods.md step 7).
#pragma once

#include <skv/numeric.hpp>
#include <skv/policy.hpp>

SKV_NAMESPACE_BEGIN
namespace detail {

//! q[b, h, :] = float(q_in[b, h, :]); sum = reset[b] ? q : sum + q.
template <class Src>
struct load_queries {
  tensor_view<const Src> q_in;
  float* q;
  float* sum;
  const std::int32_t* reset; //!< [batch]
  int heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t b = i / heads, h = i % heads;
    const Src* s = q_in.at(b, h);
    float* qo = q + i * dim;
    float* so = sum + i * dim;
    const bool restart = reset[b] != 0;
    for (int d = 0; d < dim; ++d) {
      const float x = to_float(s[d]);
      qo[d] = x;
      so[d] = restart ? x : so[d] + x;
    }
  }
};

class decode_queries {
public:
  explicit decode_queries(const tier_resources& mem) {
    skv::bind(q_, mem.of(tier::fast));
    skv::bind(sum_, mem.of(tier::fast));
  }
  void reserve(int max_batch, int heads, int dim) {
    ensure_size(q_, std::size_t(max_batch) * heads * dim);
    ensure_size(sum_, q_.size());
  }
  //! After a prefill: no decode query yet.
  void clear(int batch, int heads, int dim) {
    reserve(batch, heads, dim);
    loaded_ = false;
  }
  template <class Src>
  void load(const tensor_view<const Src>& q, const std::int32_t* reset, int batch, int heads, int dim, stream_t s) {
    parallel_for(std::int64_t(batch) * heads, load_queries<Src>{q, raw(q_), raw(sum_), reset, heads, dim}, s);
    loaded_ = true;
  }
  bool loaded() const { return loaded_; }
  const float* current() const { return raw(q_); }
  const float* partial_sum() const { return raw(sum_); }
  std::size_t fast_bytes() const { return allocated_bytes(q_) + allocated_bytes(sum_); }

private:
  fast_vector<float> q_, sum_;
  bool loaded_ = false;
};

} // namespace detail
SKV_NAMESPACE_END
