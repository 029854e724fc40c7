//! @file selector/composed_selector.hpp
//! The library's selector: a *retention* (which tokens stay in the store, at prefill and as tokens are appended)
//! composed with a *choice* (which retained tokens each decode step attends). One budget τ serves both parts.
//!
//! | retention \ choice | `attend_all` | `segment_topk` |
//! |---|---|---|
//! | `keep_all` | full attention | Quest, lossless SentenceKV |
//! | `keep_window_top` | SnapKV, PyramidKV, ChunkKV | SentenceKV (r·τ pre-filter) |
//! | `keep_sink_recent` | StreamingLLM | (ablation) |
//! | `keep_heavy_hitters` | H2O | (ablation) |
#pragma once

#include <skv/concepts.hpp>
#include <skv/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

SKV_NAMESPACE_BEGIN

//! retention: the first part of a `composed_selector`. Requires
//! - `typename R::options`, `R(const options&, const policy_init&, int budget)`;
//! - `r.validate()`, `r.window() -> int` (prompt queries read at prefill);
//! - `r.retain_prefill(prefill_context<Src>, retention_list&)`, `r.retain_append(append_context<T>,
//!   retention_list&) -> bool` (as the selector's);
//! - `r.max_retained(reservation) -> int64`, `r.bytes() -> std::size_t`.
//! Optional: `observe` (as `observing_selector`), `retain_prefill(ctx, keep, R& previous)` (as
//! `layer_reusing_selector`), `reserve(reservation)`.
template <class R>
concept retention = requires(R& r, const R& cr, const prefill_context<float>& pc, const append_context<float>& ac,
                             retention_list& keep, const reservation& res) {
  typename R::options;
  requires std::constructible_from<R, const typename R::options&, const policy_init&, int>;
  { cr.validate() } -> std::same_as<void>;
  { cr.window() } -> std::convertible_to<int>;
  { r.retain_prefill(pc, keep) } -> std::same_as<void>;
  { r.retain_append(ac, keep) } -> std::same_as<bool>;
  { cr.max_retained(res) } -> std::convertible_to<std::int64_t>;
  { cr.bytes() } -> std::convertible_to<std::size_t>;
};

//! choice: the second part of a `composed_selector`. Requires
//! - `typename C::options`, `C(const options&, const policy_init&, int budget)`, `C::needs_summaries`;
//! - `c.validate()`;
//! - `c.select(select_context<T, Sum>, selection&)`: per pair `all` or an index list; `bound` on the host;
//! - `c.max_selected() -> int64` (0: always all), `c.bytes() -> std::size_t`.
//! Optional: `reserve(reservation)`; `c.window() -> int` (prompt queries it reads at prefill) with
//! `c.prepare(prefill_context<Src>, const retention_list&)` (called after the retention has decided) and
//! `c.forget()` (called when the retention evicts: store indices move).
template <class C>
concept choice = requires(C& c, const C& cc, const detail::probe_select_context& sc, selection& sel) {
  typename C::options;
  requires std::constructible_from<C, const typename C::options&, const policy_init&, int>;
  { C::needs_summaries } -> std::convertible_to<bool>;
  { cc.validate() } -> std::same_as<void>;
  { c.select(sc, sel) } -> std::same_as<void>;
  { cc.max_selected() } -> std::convertible_to<std::int64_t>;
  { cc.bytes() } -> std::convertible_to<std::size_t>;
};

namespace detail {
//! Whether a part reads the budget (`P::budgeted`, true unless a part says otherwise).
template <class P>
constexpr bool reads_budget() {
  if constexpr (requires { P::budgeted; })
    return P::budgeted;
  else
    return true;
}
} // namespace detail

//! @tparam Retention a `retention`, @tparam Choice a `choice`, @tparam DefaultBudget the default of `options.budget`
template <retention Retention, choice Choice, int DefaultBudget = 1024>
class composed_selector {
public:
  using retention_type = Retention;
  using choice_type = Choice;
  struct options {
    int budget = DefaultBudget;                 //!< τ: tokens per (sequence, KV head), as each part reads it
    typename Retention::options retention = {}; //!< the retention's own options
    typename Choice::options choice = {};       //!< the choice's own options
  };
  static constexpr bool needs_summaries = Choice::needs_summaries;
  //! Whether `options.budget` means anything (false for keep-all + attend-all: full attention).
  static constexpr bool uses_budget = detail::reads_budget<Retention>() || detail::reads_budget<Choice>();

  composed_selector(const options& o, const policy_init& init)
      : budget_(o.budget), retention_(o.retention, init, o.budget), choice_(o.choice, init, o.budget) {}

  void validate() const {
    detail::require(budget_ >= 1, "skv::composed_selector", "budget", budget_, ">= 1");
    retention_.validate();
    choice_.validate();
  }
  int window() const {
    if constexpr (requires(const Choice& c) { c.window(); })
      return std::max(retention_.window(), choice_.window());
    else
      return retention_.window();
  }
  std::int64_t max_retained(const reservation& r) const { return retention_.max_retained(r); }
  std::int64_t max_selected() const { return choice_.max_selected(); }
  std::size_t bytes() const { return retention_.bytes() + choice_.bytes(); }
  void reserve(const reservation& r) {
    if constexpr (reserving_policy<Retention>) retention_.reserve(r);
    if constexpr (reserving_policy<Choice>) choice_.reserve(r);
  }

  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep) {
    retention_.retain_prefill(ctx, keep);
    prepare_choice(ctx, keep);
  }
  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep, composed_selector& previous) requires
      requires(Retention& r) {
    r.retain_prefill(ctx, keep, r);
  }
  {
    retention_.retain_prefill(ctx, keep, previous.retention_);
    prepare_choice(ctx, keep);
  }
  template <class T>
  bool retain_append(const append_context<T>& ctx, retention_list& keep) {
    const bool evicted = retention_.retain_append(ctx, keep);
    if constexpr (requires(Choice& c) { c.forget(); })
      if (evicted) choice_.forget();
    return evicted;
  }
  template <class T, class Sum>
  void select(const select_context<T, Sum>& ctx, selection& out) {
    choice_.select(ctx, out);
  }
  template <class T, class Sum>
  void observe(const select_context<T, Sum>& ctx, const selection& sel, const attention_weights_view& w) requires
      requires(Retention& r) {
    r.observe(ctx, sel, w);
  }
  { retention_.observe(ctx, sel, w); }

  int budget() const { return budget_; }
  const Retention& retention_part() const { return retention_; }
  const Choice& choice_part() const { return choice_; }

private:
  template <class Src>
  void prepare_choice(const prefill_context<Src>& ctx, const retention_list& keep) {
    if constexpr (requires(Choice& c) { c.prepare(ctx, keep); }) choice_.prepare(ctx, keep);
  }

  int budget_;
  Retention retention_;
  Choice choice_;
};

SKV_NAMESPACE_END
