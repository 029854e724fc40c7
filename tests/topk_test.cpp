// The budgeted top-k against a plain sort. Ties are frequent on purpose: the order must be (score desc, index asc),
// the rule an index-permutation sort gives (CCCL 3.0.1's sort_by_key with greater over zipped values does not
// on the CPU backends, which is why skv never uses it).
#include <doctest/doctest.h>

#include <skv/detail/topk.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace topk_test {

TEST_CASE("budget_topk = the shortest best-ranked prefix reaching the budget, ties by lower index") {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + int(rng() % 400);
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      score[i] = float(int(rng() % 20)) * 0.5f; // many ties
      weight[i] = int(rng() % 6);               // zero weights never compete
    }
    const std::int64_t budget = 1 + rng() % 300;
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    std::vector<int> want;
    std::int64_t total = 0;
    for (int i : order) {
      if (weight[i] == 0) continue;
      if (total >= budget) break;
      want.push_back(i);
      total += weight[i];
    }
    std::vector<float> hs(budget + 1);
    std::vector<std::int32_t> hi(budget + 1);
    const int got_n = skv::detail::budget_topk(
        n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, hs.data(),
        hi.data());
    REQUIRE(got_n == int(want.size()));
    for (int i = 0; i < got_n; ++i) REQUIRE(hi[i] == want[i]);
  }
}

TEST_CASE("take_top_units: the last unit cut to its first tokens, or with `whole` skipped and the rest filled") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 1 + int(rng() % 120);
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      score[i] = float(int(rng() % 12)) * 0.5f; // many ties
      weight[i] = int(rng() % 30);              // zero weights never compete
    }
    const std::int64_t budget = 1 + rng() % 200;
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    for (bool whole : {false, true}) {
      CAPTURE(whole);
      // The plain rule: rank order; cut the unit that crosses the budget (or, whole, skip every unit that does not
      // fit in what is left and go on down the ranking).
      std::vector<std::pair<int, std::int64_t>> want; // (unit, tokens), sorted by unit below
      std::int64_t left = budget;
      for (int i : order) {
        if (weight[i] == 0 || left == 0) continue;
        if (weight[i] <= left) {
          want.emplace_back(i, weight[i]);
          left -= weight[i];
        } else if (!whole) {
          want.emplace_back(i, left);
          left = 0;
        }
      }
      std::sort(want.begin(), want.end());
      std::vector<float> hs(budget + 1);
      std::vector<std::int32_t> hi(budget + 1);
      std::vector<std::pair<int, std::int64_t>> got;
      const std::int64_t total = skv::detail::take_top_units(
          n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, hs.data(),
          hi.data(), [&](std::int32_t i, std::int64_t take) { got.emplace_back(i, take); }, whole);
      REQUIRE(got == want);
      std::int64_t sum = 0;
      for (auto& g : got) sum += g.second;
      REQUIRE(total == sum);
      REQUIRE(total <= budget);
    }
  }
}

TEST_CASE("sort_ascending") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<std::int32_t> a(rng() % 1000);
    for (auto& x : a) x = std::int32_t(rng() % 500);
    auto want = a;
    std::sort(want.begin(), want.end());
    skv::detail::sort_ascending(a.data(), int(a.size()));
    REQUIRE(a == want);
  }
}

} // namespace topk_test
