// Executors (backend/executor.hpp): on the CPU backends a call's stream says which threads run it. Every preset
// gives the same results on the default threads, one and two OpenMP threads and an engine's own parallel-for (which
// really receives the work and may split it as it likes).
#include <doctest/doctest.h>

#include <skv/skv.hpp>

#include <atomic>
#include <thread>

#include "reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace executor_test {

#if !defined(SKV_BACKEND_CUDA)

//! An engine's pool, as an engine would plug it in: ranges of at most `grain` items, run on std::threads.
struct engine_pool {
  std::atomic<long> calls{0}, ranges{0};
  std::int64_t grain = 5;
  static void parallel_for(void* self, std::int64_t n, skv::executor::task_fn task, void* work) {
    auto& p = *static_cast<engine_pool*>(self);
    p.calls.fetch_add(1);
    std::vector<std::thread> threads;
    for (std::int64_t b = 0; b < n; b += p.grain) {
      p.ranges.fetch_add(1);
      const std::int64_t e = std::min(n, b + p.grain);
      if (threads.size() < 3)
        threads.emplace_back([=] { task(work, b, e); });
      else
        task(work, b, e);
    }
    for (auto& t : threads) t.join();
  }
};

constexpr int QH = 8, KH = 2, D = 64, STEPS = 30;

template <class Cache>
typename Cache::options options() {
  typename Cache::options o;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {1};
  if constexpr (requires { o.selector.budget; }) o.selector.budget = 96;
  return o;
}

//! Runs `Cache` over one prompt and STEPS decode steps with every call on `ex`; returns outputs and selections.
template <class Cache>
std::vector<float> run(const skv::executor* ex) {
  const auto b = ref::make_batch({260, 130, 7}, QH, KH, D, 11, false, 40);
  ref::typed_batch<float> tb(b);
  Cache cache({1, QH, KH, D}, options<Cache>());
  cache.prefill(0, tb.args(), ex);
  std::mt19937 rng(3);
  std::vector<float> trace, out(std::size_t(3) * QH * D);
  for (int s = 0; s < STEPS; ++s) {
    auto st = ref::make_step(3, QH, KH, D, rng, 40);
    for (auto& id : st.ids) id = id % 5 == 0 ? 1 : id;
    ref::typed_step<float> ts(st);
    cache.step(0, ts.args(), ref::out_view(out, QH, D), ex);
    trace.insert(trace.end(), out.begin(), out.end());
    const auto sel = cache.selection(0);
    trace.insert(trace.end(), sel.indices.begin(), sel.indices.end());
  }
  return trace;
}

TEST_CASE("every preset: the same results on every executor, and an engine's pool receives the work") {
  skv::executor one;
  one.threads = 1;
  skv::executor two;
  two.threads = 2;
  engine_pool engine;
  skv::executor theirs;
  theirs.parallel_for = &engine_pool::parallel_for;
  theirs.pool = &engine;
  skv::for_each_preset<float>([&](std::string_view name, auto preset) {
    using Cache = typename decltype(preset)::type;
    CAPTURE(name);
    const auto want = run<Cache>(nullptr);
    CHECK(run<Cache>(&one) == want);
    CHECK(run<Cache>(&two) == want);
    const long before = engine.calls.load();
    CHECK(run<Cache>(&theirs) == want);
    CHECK(engine.calls.load() - before >= STEPS); // at least one parallel-for per step went to the engine
  });
  CHECK(engine.ranges.load() > engine.calls.load()); // and it split them
}

TEST_CASE("an engine's parallel-for covers every index exactly once, for any n") {
  engine_pool engine;
  skv::executor ex;
  ex.parallel_for = &engine_pool::parallel_for;
  ex.pool = &engine;
  for (std::int64_t n : {1, 2, 3, 7, 64, 1001}) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    auto body = [&](std::int64_t i) { hits[std::size_t(i)].fetch_add(1); };
    for (int rep = 0; rep < 5; ++rep) skv::parallel_for(n, body, &ex);
    for (std::int64_t i = 0; i < n; ++i) {
      CAPTURE(n);
      CHECK(hits[std::size_t(i)].load() == 5);
    }
  }
}

#endif

} // namespace executor_test
