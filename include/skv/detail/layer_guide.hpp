//! Cross-layer guidance (`segment_topk::options::guide_layer`): what one layer's selection publishes for others,
//! per sequence and closed segment. One per cache, shared by its layers through `policy_init::guide`.
#pragma once

#include <skv/backend/tier.hpp>

#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

struct layer_guide {
  //! [batch, width] on the fast tier: each segment's share of the guide layer's attention, summed over its KV
  //! heads (each head's shares sum to 1), as estimated from the segment's summary score and token count.
  fast_vector<float> mass;
  fast_vector<std::int32_t> rows; //!< [batch] segments each sequence had when `mass` was published
  std::int64_t width = 0;         //!< row stride of `mass`
  int batch = 0;                  //!< sequences published; 0: nothing since the last prefill
  std::size_t bytes() const { return allocated_bytes(mass) + allocated_bytes(rows); }
  void clear() { batch = 0; }
};

} // namespace detail
SKV_NAMESPACE_END
