//! @file selector/keep_sink_recent.hpp
//! StreamingLLM's retention (Xiao et al., arXiv 2309.17453 §3.2): the first `sink` tokens (attention sinks) plus
//! the most recent `budget - sink`; a token is evicted as soon as it leaves the window.
#pragma once

#include <skv/detail/retention_kernels.hpp>
#include <skv/error.hpp>
#include <skv/policy.hpp>

#include <string>

SKV_NAMESPACE_BEGIN

//! The first `sink` tokens plus the last `budget - sink`, at prefill and after every append.
struct keep_sink_recent {
  struct options {
    int sink = 4; //!< attention-sink tokens at the start (the paper's default)
  };
  keep_sink_recent(const options& o, const policy_init& init, int budget)
      : o_(o), budget_(budget), mem_(init.memory.of(tier::fast)) {}

  void validate() const {
    constexpr const char* where = "skv::keep_sink_recent";
    detail::require(o_.sink >= 0, where, "sink", o_.sink, ">= 0");
    detail::require(budget_ > o_.sink, where, "budget", budget_, [&] {
      return "> sink (" + std::to_string(o_.sink) + "): the recent window needs at least one token";
    });
  }
  int window() const { return 0; }
  std::int64_t recent() const { return budget_ - o_.sink; }
  std::int64_t max_retained(const reservation& r) const { return std::min<std::int64_t>(r.max_tokens, budget_ + 1); }
  std::size_t bytes() const { return 0; }

  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep) {
    const layer_info& li = ctx.info;
    fast_vector<std::int32_t> len(mem_);
    detail::upload(len, std::vector<std::int32_t>(ctx.seq_len.begin(), ctx.seq_len.end()), li.stream);
    parallel_for(li.pairs(),
                 detail::keep_head_tail{nullptr, raw(len), li.kv_heads(), o_.sink, recent(), keep.index, keep.stride},
                 li.stream);
    for (int p = 0; p < li.pairs(); ++p)
      keep.length_host[p] = detail::head_tail_length(ctx.seq_len[p / li.kv_heads()], o_.sink, recent());
    synchronize(li.stream);
  }
  //! Evicts, per pair over budget, the oldest token after the sinks.
  template <class T>
  bool retain_append(const append_context<T>& ctx, retention_list& keep) {
    const layer_info& li = ctx.info;
    bool over = false;
    for (int p = 0; p < li.pairs(); ++p) {
      const std::int64_t n = ctx.store.length_host[p];
      over |= n > budget_;
      keep.length_host[p] = detail::head_tail_length(n, o_.sink, recent());
    }
    if (!over) return false;
    parallel_for(
        li.pairs(),
        detail::keep_head_tail{ctx.store.length, nullptr, li.kv_heads(), o_.sink, recent(), keep.index, keep.stride},
        li.stream);
    return true;
  }

private:
  options o_;
  int budget_;
  memory_resource* mem_;
};

SKV_NAMESPACE_END
