//! @file selector/all_selector.hpp
//! Retain and attend to everything: dense attention (the `full_kv` baseline).
#pragma once

#include <skv/error.hpp>
#include <skv/selector/common.hpp>
#include <skv/tensor.hpp>

SKV_NAMESPACE_BEGIN

struct all_selector {
  struct options {};
  static constexpr bool needs_summaries = false;
  all_selector(const options&, int, int) {}
  void validate(const model_shape&) const {}
  int window() const { return 0; }
  template <class L, class Src>
  void retain_prefill(L& l, const detail::prefill_input<Src>& in, detail::index_lists& keep) {
    detail::retain_everything(l, in, keep);
  }
  template <class L>
  bool retain_append(L&, detail::index_lists&) {
    return false;
  }
  template <class L>
  void select(L& l) {
    detail::select_everything(l);
  }
  std::size_t bytes() const { return 0; }
};

SKV_NAMESPACE_END
