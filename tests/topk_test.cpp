// The budgeted top-k against a plain sort. Ties are frequent on purpose: the order must be (score desc, index asc),
// the rule an index-permutation sort gives (CCCL 3.0.1's sort_by_key with greater over zipped values does not
// on the CPU backends, which is why skv never uses it).
#include <doctest/doctest.h>

#include <skv/detail/topk.hpp>

#include <algorithm>
#include <cmath>
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

// The plain rule, by a stable sort: (unit, tokens) taken, sorted by unit.
std::vector<std::pair<int, std::int64_t>> plain_rule(const std::vector<float>& score, const std::vector<int>& weight,
                                                     std::int64_t budget) {
  std::vector<int> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
  std::vector<std::pair<int, std::int64_t>> want;
  std::int64_t left = budget;
  for (int i : order) {
    if (weight[i] == 0 || left == 0) continue;
    const std::int64_t take = std::min<std::int64_t>(weight[i], left);
    want.emplace_back(i, take);
    left -= take;
  }
  std::sort(want.begin(), want.end());
  return want;
}

//! The worst-ranked unit the plain rule takes (lowest score, then highest index): where its budget runs out.
std::pair<int, std::int64_t> worst_taken(const std::vector<std::pair<int, std::int64_t>>& taken,
                                         const std::vector<float>& score) {
  auto worst = taken.front();
  for (auto& w : taken)
    if (score[w.first] < score[worst.first] || (score[w.first] == score[worst.first] && w.first > worst.first))
      worst = w;
  return worst;
}

TEST_CASE("budget_cut: the histogram cut is the plain rule's, over score distributions that stress the bins") {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int trial = 0; trial < 240; ++trial) {
    const int kind = trial % 7;
    CAPTURE(trial);
    CAPTURE(kind);
    const int n = 1 + int(rng() % (trial % 2 ? 20000 : 700));
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      const float z = normal(rng);
      // 0 continuous; 1 a few values ulps apart; 2 all equal: zeros of both signs; 3 magnitudes 2^-100 .. 2^100;
      // 4 outliers far above the rest; 5 heavy ties; 6 mostly -inf (segments a pre-filter emptied)
      const float by_kind[] = {z,
                               1.f + 1e-6f * float(int(rng() % 7)),
                               rng() % 2 ? -0.f : 0.f,
                               std::ldexp(z, int(rng() % 200) - 100),
                               i % 97 == 0 ? 1e30f : z * 1e-3f,
                               float(int(rng() % 50)) + (rng() % 8 == 0 ? z * 1e-5f : 0.f),
                               rng() % 10 != 0 ? -INFINITY : z};
      score[i] = by_kind[kind];
      weight[i] = trial % 3 == 0 ? 1 : int(rng() % 30); // sizes 1 (tokens) or 0..29 (sentences; 0 never competes)
    }
    const std::int64_t budget = 1 + rng() % (trial % 4 == 0 ? 50 : 5000);
    const auto want = plain_rule(score, weight, budget);
    // cap: the scratch take_top_units gives (budget + 1), and small ones that force more radix levels
    for (int cap : {int(budget) + 1, 1 + int(rng() % 8)}) {
      CAPTURE(cap);
      std::vector<float> hs(cap);
      std::vector<std::int32_t> hi(cap);
      skv::detail::cut_point cut;
      const bool ok = skv::detail::budget_cut(
          n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, cap, hs.data(),
          hi.data(), cut);
      REQUIRE(ok);
      std::int64_t total = 0;
      for (auto& w : want) total += w.second;
      if (cut.all) {
        REQUIRE(total < budget);
        continue;
      }
      REQUIRE(!want.empty());
      // the cut unit is the worst-ranked one taken, and takes what the plain rule gives it
      const auto worst = worst_taken(want, score);
      REQUIRE(cut.id == worst.first);
      REQUIRE(cut.score == score[worst.first]);
      REQUIRE(cut.take == worst.second);
    }
    std::vector<float> hs(budget + 1);
    std::vector<std::int32_t> hi(budget + 1);
    std::vector<std::pair<int, std::int64_t>> got;
    skv::detail::take_top_units(
        n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, hs.data(),
        hi.data(), [&](std::int32_t i, std::int64_t take) { got.emplace_back(i, take); });
    REQUIRE(got == want);
  }
}

//! Runs `sampled_cut` with a scratch of `cap`; where it answers, its cut must be the plain rule's. Returns whether it
//! answered.
bool sampled_cut_matches(const std::vector<float>& score, const std::vector<int>& weight, std::int64_t budget, int cap) {
  std::vector<float> hs(cap);
  std::vector<std::int32_t> hi(cap);
  skv::detail::cut_point cut;
  const bool ok = skv::detail::sampled_cut(
      int(score.size()), skv::detail::scores_at{score.data()}, [&](int i) { return std::int64_t(weight[i]); }, budget,
      cap, hs.data(), hi.data(), cut);
  if (!ok) return false;
  const auto want = plain_rule(score, weight, budget);
  const auto worst = worst_taken(want, score);
  REQUIRE(cut.id == worst.first);
  REQUIRE(cut.take == worst.second);
  return true;
}

TEST_CASE("sampled_cut answers for long rankings like a decode step's, with the plain rule's cut") {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.f, 3.f);
  int answered = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 4096 + int(rng() % 8192);
    const bool prefiltered = trial % 2 == 1; // most sentences emptied: weight 0, score -inf
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      const bool empty = prefiltered && rng() % 10 != 0;
      score[i] = empty ? -INFINITY : normal(rng);
      weight[i] = empty ? 0 : 1 + int(rng() % (prefiltered ? 4 : 40));
    }
    const std::int64_t budget = 960;
    answered += sampled_cut_matches(score, weight, budget, int(budget) + 1);
  }
  CHECK(answered >= 36); // the fast path is what runs, not only the radix select behind it
}

TEST_CASE("sampled_cut widens its margin when the sample overrates the units, and still finds the plain rule's cut") {
  // The strided sample sits on indices i % stride == 0; here those units score a little higher than the rest, so the
  // first threshold collects too little weight and the pass must be retried with a wider margin.
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.f, 1.f);
  int answered = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 4096 + int(rng() % 8192);
    const int stride = n / 256; // the CPU's sample of 256 (this test runs on the host)
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      score[i] = normal(rng) + (i % stride == 0 ? 0.4f : 0.f);
      weight[i] = 1 + int(rng() % 40);
    }
    const std::int64_t budget = 2048;
    answered += sampled_cut_matches(score, weight, budget, int(4 * budget));
  }
  CHECK(answered >= 36);
}

TEST_CASE("budget_cut ranks infinite scores (masked units); a NaN score leaves the rule to the heap, as -inf") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 100; ++trial) {
    const int n = 1 + int(rng() % 300);
    std::vector<float> score(n);
    std::vector<int> weight(n);
    for (int i = 0; i < n; ++i) {
      const int r = int(rng() % 10);
      score[i] = r == 0 ? -INFINITY : r == 1 ? INFINITY : r == 2 ? -0.f : float(int(rng() % 9) - 4);
      weight[i] = int(rng() % 5);
    }
    const std::int64_t budget = 1 + rng() % 200;
    std::vector<float> hs(budget + 1);
    std::vector<std::int32_t> hi(budget + 1);
    std::vector<std::pair<int, std::int64_t>> got;
    skv::detail::take_top_units(
        n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, hs.data(),
        hi.data(), [&](std::int32_t i, std::int64_t take) { got.emplace_back(i, take); });
    REQUIRE(got == plain_rule(score, weight, budget));
    score[rng() % n] = NAN;
    score[rng() % n] = NAN;
    // take_top_units ranks NaN as -inf (the heap path), in both rules, and never passes the budget
    auto as_ranked = score;
    for (auto& x : as_ranked)
      if (x != x) x = -INFINITY;
    for (bool whole : {false, true}) {
      got.clear();
      const std::int64_t total = skv::detail::take_top_units(
          n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, hs.data(),
          hi.data(), [&](std::int32_t i, std::int64_t take) { got.emplace_back(i, take); }, whole);
      REQUIRE(total <= budget);
      if (!whole) REQUIRE(got == plain_rule(as_ranked, weight, budget));
    }
    skv::detail::cut_point cut;
    REQUIRE_FALSE(skv::detail::budget_cut(
        n, [&](int i) { return score[i]; }, [&](int i) { return std::int64_t(weight[i]); }, budget, int(budget) + 1,
        hs.data(), hi.data(), cut));
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
