//! A busy neighbour for skv-bench: a fork-join pool like a BLAS library's or an engine's, whose threads compute for
//! `work_us` microseconds, meet at a spinning barrier, and start the next job at once — keeping its cores busy the
//! whole time, as OpenBLAS beside skv-eval did. The decode step measured beside it shows how skv shares the cores.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace skv_bench {

class busy_neighbour {
public:
  busy_neighbour(int threads, int work_us) : threads_(threads), work_us_(work_us) {
    for (int t = 0; t < threads; ++t) pool_.emplace_back([this] { loop(); });
  }
  busy_neighbour(const busy_neighbour&) = delete;
  busy_neighbour& operator=(const busy_neighbour&) = delete;
  ~busy_neighbour() {
    stop_.store(true);
    for (auto& t : pool_) t.join();
  }
  //! Jobs completed by the whole pool so far.
  std::int64_t jobs() const { return generation_.load(); }

private:
  void loop() {
    using clock = std::chrono::steady_clock;
    volatile double x = 1.0;
    while (!stop_.load(std::memory_order_relaxed)) {
      const auto until = clock::now() + std::chrono::microseconds(work_us_);
      while (clock::now() < until)
        for (int i = 0; i < 256; ++i) x = x * 1.0000001 + 1e-9;
      // barrier: the last to arrive starts the next job; the others spin (as OpenMP and OpenBLAS threads do)
      const std::int64_t g = generation_.load(std::memory_order_acquire);
      if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads_) {
        arrived_.store(0, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
      } else {
        while (generation_.load(std::memory_order_acquire) == g && !stop_.load(std::memory_order_relaxed)) {
        }
      }
    }
  }

  int threads_, work_us_;
  std::atomic<bool> stop_{false};
  std::atomic<int> arrived_{0};
  std::atomic<std::int64_t> generation_{0};
  std::vector<std::thread> pool_;
};

} // namespace skv_bench
