//! @file selector/streaming_selector.hpp
//! StreamingLLM (Xiao et al., arXiv 2309.17453 §3.2): the first `sink` tokens (attention sinks) plus a window of the
//! most recent `budget - sink` tokens; everything else is evicted as soon as it leaves the window.
#pragma once

#include <skv/error.hpp>
#include <skv/selector/common.hpp>
#include <skv/tensor.hpp>

#include <string>

SKV_NAMESPACE_BEGIN

struct streaming_selector {
  struct options {
    int budget = 1024; //!< tokens kept per (sequence, KV head): sink + recent
    int sink = 4;      //!< attention-sink tokens at the start (the paper's default)
  };
  static constexpr bool needs_summaries = false;

  streaming_selector(const options& o, int, int) : o_(o) {}
  void validate(const model_shape&) const {
    constexpr const char* where = "skv::streaming_selector";
    detail::require(o_.sink >= 0, where, "sink", o_.sink, ">= 0");
    detail::require(o_.budget > o_.sink, where, "budget", o_.budget,
                    "> sink (" + std::to_string(o_.sink) + "): the recent window needs at least one token");
  }
  int window() const { return 0; }
  int recent() const { return o_.budget - o_.sink; }

  template <class L, class Src>
  void retain_prefill(L& l, const detail::prefill_input<Src>& in, detail::index_lists& keep) {
    detail::keep_head_tail(
        l.pairs(), [&](int p) { return std::int64_t(in.seq_len[p / l.kv_heads()]); }, o_.sink, recent(), keep);
  }
  template <class L>
  bool retain_append(L& l, detail::index_lists& keep) {
    bool over = false;
    for (int p = 0; p < l.pairs(); ++p) over |= l.store.length(p) > o_.budget;
    if (!over) return false;
    detail::keep_head_tail(
        l.pairs(), [&](int p) { return l.store.length(p); }, o_.sink, recent(), keep);
    return true;
  }
  template <class L>
  void select(L& l) {
    detail::select_everything(l);
  }
  std::size_t bytes() const { return 0; }

private:
  options o_;
};

SKV_NAMESPACE_END
