//! @file selector/attend_all.hpp
//! Choice that attends to every retained token (full attention, StreamingLLM, SnapKV, PyramidKV, ChunkKV, H2O).
#pragma once

#include <skv/policy.hpp>

SKV_NAMESPACE_BEGIN

namespace detail {
struct select_all_rows {
  const std::int32_t* length;
  std::int32_t* count;
  std::uint8_t* all;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    count[p] = length[p];
    all[p] = 1;
  }
};
} // namespace detail

//! Every step attends to everything retained (`selection::all`).
struct attend_all {
  struct options {};
  static constexpr bool budgeted = false; //!< the selector's budget means nothing here
  static constexpr bool needs_summaries = false;
  attend_all(const options&, const policy_init&, int) {}
  void validate() const {}
  std::int64_t max_selected() const { return 0; }
  std::size_t bytes() const { return 0; }

  template <class T, class Sum>
  void select(const select_context<T, Sum>& ctx, selection& out) {
    parallel_for(ctx.info.pairs(), detail::select_all_rows{ctx.store.length, out.count, out.all}, ctx.info.stream);
    for (int p = 0; p < ctx.info.pairs(); ++p) out.bound[p] = ctx.store.length_host[p];
  }
};

SKV_NAMESPACE_END
