//! @file detail/decode_attention.hpp
//! The cache's attention part: exact decode attention over the fetched selection, and the per-token weights that
//! observing selectors learn from. Owns its scratch, sized up front by `reserve` so that a decode step allocates
//! nothing.
#pragma once

#include <skv/detail/attention_kernels.hpp>
#include <skv/detail/attention_weights.hpp>
#include <skv/policy.hpp>

#include <algorithm>
#include <cstdint>

#if defined(_OPENMP)
#  include <omp.h>
#endif

SKV_NAMESPACE_BEGIN
namespace detail {

//! Multiplies the decode queries by the softmax scale.
struct scale_queries {
  const float* q;
  float* out;
  float scale;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const { out[i] = q[i] * scale; }
};

template <class T>
class decode_attention {
public:
  explicit decode_attention(const tier_resources& mem) {
    for (auto* v : {&q_scaled_, &part_ml_, &part_acc_, &weights_, &logits_}) skv::bind(*v, mem.of(tier::fast));
  }

  //! Scratch for up to `max_pairs` pairs of `group` query heads attending to at most `max_selected` tokens each.
  void reserve(int max_pairs, int group, int dim, std::int64_t max_selected, bool with_weights) {
    const std::int64_t gblocks = (group + attend_group_block - 1) / attend_group_block;
    const std::int64_t lanes = std::int64_t(max_pairs) * gblocks;
    const std::int64_t items =
        std::min(lanes * std::max<std::int64_t>(1, (max_selected + 255) / 256), want_items() + lanes);
    ensure_size(q_scaled_, std::size_t(max_pairs) * group * dim);
    ensure_size(part_ml_, std::size_t(items) * attend_group_block * 2);
    ensure_size(part_acc_, std::size_t(items) * attend_group_block * dim);
    if (with_weights) {
      ensure_size(weights_, std::size_t(max_pairs) * std::max<std::int64_t>(1, max_selected));
      ensure_size(logits_, weights_.size());
    }
  }

  //! out[b, h * group + g] = softmax(scale * q . K_sel) V_sel for every pair; `bound` bounds every count.
  template <class O>
  void run(const float* q, float scale, const fetched_view<T>& f, const selection& sel, std::int64_t bound,
           const layer_info& li, tensor_view<O> out) {
    const int P = li.pairs(), G = li.group(), D = li.dim();
    const int gblocks = (G + attend_group_block - 1) / attend_group_block;
    const std::int64_t lanes = std::int64_t(P) * gblocks, n = std::max<std::int64_t>(1, bound);
    const std::int64_t chunks_wanted = std::max<std::int64_t>(1, (want_items() + lanes - 1) / lanes);
    const int chunk = int(std::max<std::int64_t>(256, (n + chunks_wanted - 1) / chunks_wanted));
    const int chunks = int((n + chunk - 1) / chunk);
    const std::int64_t items = lanes * chunks;
    const std::int64_t nq = std::int64_t(li.batch) * li.shape.num_q_heads * D;
    ensure_size(q_scaled_, std::size_t(nq));
    ensure_size(part_ml_, std::size_t(items) * attend_group_block * 2);
    ensure_size(part_acc_, std::size_t(items) * attend_group_block * D);
    parallel_for(nq, scale_queries{q, raw(q_scaled_), scale}, li.stream);
    attend_params<T> prm{raw(q_scaled_), f.k_all, f.v_all,       f.k_sel,       f.v_sel, f.slots,
                         sel.count,      sel.all, f.slot_stride, li.kv_heads(), G,       chunk,
                         chunks,         gblocks, raw(part_ml_), raw(part_acc_)};
    dispatch_head_dim(D, [&](auto d) {
      constexpr int DD = decltype(d)::value;
      parallel_for(items, attend_partial<T, DD>{prm}, li.stream);
      parallel_for(std::int64_t(P) * G,
                   attend_merge<O, DD>{raw(part_ml_), raw(part_acc_), out, li.kv_heads(), G, chunks, gblocks},
                   li.stream);
    });
  }

  //! Each selected token's softmax weight summed over its query group (after `run`, which scaled the queries).
  attention_weights_view weights(const fetched_view<T>& f, const selection& sel, std::int64_t bound,
                                 const layer_info& li) {
    const int P = li.pairs();
    const std::int64_t stride = std::max<std::int64_t>(1, bound);
    ensure_size(weights_, std::size_t(P) * stride);
    ensure_size(logits_, weights_.size());
    dispatch_head_dim(li.dim(), [&](auto d) {
      parallel_for(P,
                   attention_weights<T, decltype(d)::value>{raw(q_scaled_), f.k_all, f.k_sel, f.slots, sel.count,
                                                            sel.all, f.slot_stride, raw(weights_), raw(logits_), stride,
                                                            li.group()},
                   li.stream);
    });
    return {raw(weights_), stride};
  }

  std::size_t fast_bytes() const {
    return allocated_bytes(q_scaled_) + allocated_bytes(part_ml_) + allocated_bytes(part_acc_) +
           allocated_bytes(weights_) + allocated_bytes(logits_);
  }

private:
  //! Work items to aim for: enough chunks per lane to keep every core (or SM) busy at batch 1.
  static std::int64_t want_items() {
#if defined(SKV_BACKEND_CUDA)
    return 8 * 1024;
#elif defined(_OPENMP)
    return 8 * std::int64_t(omp_get_max_threads());
#else
    return 8;
#endif
  }

  fast_vector<float> q_scaled_, part_ml_, part_acc_, weights_, logits_;
};

} // namespace detail
SKV_NAMESPACE_END
