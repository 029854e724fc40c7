//! @file selector/keep_all.hpp
//! Retention that keeps every prompt and decoded token (full attention, Quest, lossless SentenceKV).
#pragma once

#include <skv/detail/retention_kernels.hpp>
#include <skv/policy.hpp>

SKV_NAMESPACE_BEGIN

//! Keeps everything; decode tokens are appended, nothing is ever evicted.
struct keep_all {
  struct options {};
  static constexpr bool budgeted = false; //!< the selector's budget means nothing here
  keep_all(const options&, const policy_init& init, int) : mem_(init.memory.of(tier::fast)) {}
  void validate() const {}
  int window() const { return 0; }
  std::int64_t max_retained(const reservation& r) const { return r.max_tokens; }
  std::size_t bytes() const { return 0; }

  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep) {
    detail::retain_whole_prompts(ctx, keep, mem_);
  }
  template <class T>
  bool retain_append(const append_context<T>&, retention_list&) {
    return false;
  }

private:
  memory_resource* mem_;
};

SKV_NAMESPACE_END
