// Runtime fit for engines: after reserve(), the decode path allocates nothing — from the cache's memory resources
// or from the C++ heap — for every preset of the preset list, across segment closings, fallback steps, evictions
// and exports. A control shows the counters do see allocations when there is no reservation.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <memory_resource>
#include <new>

#include "reference.hpp"

// Every C++ heap allocation of the process is counted while `counting` is set (replaceable global operator new).
namespace runtime_test_heap {
inline std::atomic<bool> counting{false};
inline std::atomic<long> news{0};
inline void* allocate(std::size_t n, std::size_t align) {
  if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
  n = n == 0 ? 1 : n;
  void* p =
      align <= alignof(std::max_align_t) ? std::malloc(n) : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
} // namespace runtime_test_heap

void* operator new(std::size_t n) { return runtime_test_heap::allocate(n, 0); }
void* operator new[](std::size_t n) { return runtime_test_heap::allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return runtime_test_heap::allocate(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return runtime_test_heap::allocate(n, std::size_t(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return runtime_test_heap::allocate(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return runtime_test_heap::allocate(n, std::size_t(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t& t) noexcept {
  return operator new(n, a, t);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace runtime_test {

//! A memory resource that counts what it hands out (and hands it out from the tier's default resource).
class counting_resource final : public std::pmr::memory_resource {
public:
  explicit counting_resource(skv::tier t) : upstream_(skv::default_resource(t)) {}
  long allocations() const { return allocations_; }
  std::size_t live_bytes() const { return live_; }

private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    ++allocations_;
    live_ += bytes;
    return upstream_->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    live_ -= bytes;
    upstream_->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
  std::pmr::memory_resource* upstream_;
  long allocations_ = 0;
  std::size_t live_ = 0;
};

constexpr int L = 2, QH = 8, KH = 2, D = 64, STEPS = 48;
constexpr std::int32_t boundary = 1;

//! The decode tokens of a run, made before anything is counted (their own vectors allocate).
struct token_stream {
  std::vector<ref::step> steps;
  std::vector<ref::typed_step<float>> typed;
  token_stream(int batch, std::uint32_t seed) {
    std::mt19937 rng(seed);
    for (int s = 0; s < STEPS; ++s) {
      steps.push_back(ref::make_step(batch, QH, KH, D, rng, 40));
      for (auto& id : steps.back().ids) id = id % 5 == 0 ? boundary : id; // a sentence closes every few tokens
    }
    for (const auto& s : steps) typed.emplace_back(s);
  }
};

//! Drives `steps` decode steps of every layer (with exports); returns {resource allocations, heap allocations}.
template <class Cache>
std::pair<long, long> count_decode(Cache& cache, const token_stream& in, counting_resource& fast,
                                   counting_resource& slow, std::int64_t index_capacity) {
  const int B = int(in.steps[0].ids.size()), P = B * KH;
  std::vector<float> out(std::size_t(B) * QH * D);
  std::vector<std::int32_t> indptr(P + 1), lengths(P);
  std::vector<std::int32_t> indices(static_cast<std::size_t>(index_capacity));
  std::vector<std::int32_t> table(static_cast<std::size_t>(index_capacity));
  const long before = fast.allocations() + slow.allocations();
  runtime_test_heap::news = 0;
  runtime_test_heap::counting = true;
  for (const auto& ts : in.typed)
    for (int l = 0; l < L; ++l) {
      cache.step(l, ts.args(), ref::out_view(out, QH, D));
      cache.export_csr(l, indptr.data(), indices.data(), index_capacity);
      cache.export_padded(l, table.data(), cache.selection_width(l), lengths.data());
    }
  runtime_test_heap::counting = false;
  return {fast.allocations() + slow.allocations() - before, runtime_test_heap::news.load()};
}

template <class Cache>
typename Cache::options options_for(counting_resource& fast, counting_resource& slow) {
  typename Cache::options o;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {boundary};
  if constexpr (requires { o.selector.budget; }) o.selector.budget = 96; // small: StreamingLLM and H2O evict
  o.fast_memory = &fast;
  o.slow_memory = &slow;
  o.check_values = false;
  return o;
}

TEST_CASE("after reserve(), decode steps and exports allocate nothing, for every preset") {
  const auto b = ref::make_batch({300, 170}, QH, KH, D, 4, false, 40);
  ref::typed_batch<float> tb(b);
  const token_stream in(2, 8);
  skv::for_each_preset<float>([&](std::string_view name, auto preset) {
    using Cache = typename decltype(preset)::type;
    CAPTURE(name);
    counting_resource fast(skv::tier::fast), slow(skv::tier::slow);
    Cache cache({L, QH, KH, D}, options_for<Cache>(fast, slow));
    cache.reserve(skv::reservation{2, 300 + STEPS});
    for (int l = 0; l < L; ++l) cache.prefill(l, tb.args());
    const auto [resource, heap] = count_decode(cache, in, fast, slow, 2 * KH * (300 + STEPS));
    CHECK(resource == 0);
    CHECK(heap == 0);
    CHECK(fast.live_bytes() > 0); // the cache really draws from the resources it was given
    if (Cache::store_tier == skv::tier::slow) CHECK(slow.live_bytes() > 0);
  });
}

TEST_CASE("control: without a reservation the same counters see the decode path grow its buffers") {
  const auto b = ref::make_batch({40, 24}, QH, KH, D, 4, false, 40);
  ref::typed_batch<float> tb(b);
  const token_stream in(2, 9);
  counting_resource fast(skv::tier::fast), slow(skv::tier::slow);
  skv::full_kv<float> cache({L, QH, KH, D}, options_for<skv::full_kv<float>>(fast, slow));
  for (int l = 0; l < L; ++l) cache.prefill(l, tb.args());
  // without reserve() the first step sizes the selection, attention and policy buffers lazily
  const auto [resource, heap] = count_decode(cache, in, fast, slow, 2 * KH * (40 + STEPS));
  CHECK(resource > 0);
  CHECK(heap > 0);
}

} // namespace runtime_test
