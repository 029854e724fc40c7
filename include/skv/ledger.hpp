//! @file ledger.hpp
//! The memory ledger: bytes resident per tier and bytes moved between tiers.
#pragma once

#include <cstddef>

namespace skv {

//! What a cache holds and what it moved. Resident bytes are allocated capacity (what the memory costs), summed
//! over everything the cache owns on that tier: token K/V and positions, summaries, selection and fetch buffers,
//! policy state. Moved bytes count K/V (and positions) that crossed the tier boundary since the last
//! `kv_cache::ledger()` call, including reads of the slow tier by attention (zero-copy on CUDA).
struct memory_ledger {
  std::size_t fast_bytes = 0;    //!< resident on the fast tier (GPU memory on CUDA)
  std::size_t slow_bytes = 0;    //!< resident on the slow tier (host memory)
  std::size_t moved_to_fast = 0; //!< slow -> fast since the last query
  std::size_t moved_to_slow = 0; //!< fast -> slow since the last query (offloading at prefill / append)
};

} // namespace skv
