// skv-bench: the cost of every stage of every preset, on generated sentence-structured inputs.
//
// Benchmarks are named <stage>/<preset>/ctx:<N>/budget:<B>/shape:<name>/kv:<type>:
//   prefill_policy          kv_cache::prefill (segment + pre-filter + summarize + offload); no dense attention
//   select                  the selector of one steady decode step (kv_cache::select without the fetch)
//   fetch                   the offloader's fetch of that step (slow -> fast copies, with reuse)
//   attend                  kv_cache::attend over the selection (dense_attend: full_kv over the whole context)
//   decode_step             kv_cache::step (append + select + fetch + attend), steady state: the open sentence
//                           has >= 2 queries, so SentenceKV selects (no fallback)
//   decode_step_amortized   kv_cache::step over a stream with a sentence boundary every 24 tokens: 1 step in 24 is
//                           a fallback step over the whole cache (methods.md step 6)
//   prefill_attention       dense causal prefill attention (bench/dense_prefill.hpp): the prefill denominator
//   model_step              kv_cache::step of every stepped layer for a whole ragged batch (bench/model_runner.hpp):
//                           .../layers:L/depth:D/batch:B, a stream with sentence ends every 24 tokens (amortized);
//                           tokens_per_s = B / mean step
// Each decode benchmark runs whole steps and reports the time of its stage (manual time).
//
// Usage: skv-bench [--quick] [Google Benchmark flags]. --quick runs a small subset in seconds (CI).
#include <algorithm>
#include <benchmark/benchmark.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dense_prefill.hpp"
#include "harness.hpp"
#include "model_runner.hpp"
#include "neighbour.hpp"

namespace skv_bench {
namespace {

// ---- the presets: every one of skv/preset_list.hpp ---------------------------------------------------------------
struct preset_entry {
  std::string name;
  const char* type;
  runner_factory make;
  model_runner_factory make_model;
};

//! Presets also measured with float and half K/V (the rest: bfloat16 only).
bool typed(std::string_view name) {
  return name == "full_kv" || name == "sentence_kv" || name == "sentence_kv_lossless";
}

//! A preset with the mean key replaced by the sketched mean key (the same selection; bench-only ablation rows).
template <template <class> class Preset, class T>
using sketched = skv::kv_cache<typename Preset<T>::segmenter_type, skv::sketched_mean_key_summarizer,
                               typename Preset<T>::selector_type, typename Preset<T>::offloader_type, T>;

#if !defined(SKV_BACKEND_CUDA) // CPU rows only (see sketched_presets)
//! ... and by the projected mean key (rank head_dim / 4: the approximate pre-screen, bench-only ablation rows).
template <template <class> class Preset, class T>
using projected = skv::kv_cache<typename Preset<T>::segmenter_type, skv::projected_mean_key_summarizer<>,
                                typename Preset<T>::selector_type, typename Preset<T>::offloader_type, T>;
#endif

template <class T>
std::vector<preset_entry> presets_of(const char* type, bool only_typed) {
  std::vector<preset_entry> v;
  skv::for_each_preset<T>([&](std::string_view name, auto preset) {
    using cache = typename decltype(preset)::type;
    if (!only_typed || typed(name)) v.push_back({std::string(name), type, factory<cache>(), model_factory<cache>()});
  });
  return v;
}
//! The SentenceKV presets with the sketched and the projected mean key (bfloat16): the selection stage and the
//! step, for flatness.
std::vector<preset_entry> sketched_presets() {
  using plain = sketched<skv::sentence_kv, skv::bfloat16>;
  using lossless = sketched<skv::sentence_kv_lossless, skv::bfloat16>;
  // one-layer rows only (no whole-model factory): each cache type costs the CUDA build minutes of instantiation
  std::vector<preset_entry> v{{"sentence_kv+sketch", "bfloat16", factory<plain>(), {}},
                               {"sentence_kv_lossless+sketch", "bfloat16", factory<lossless>(), {}}};
#if !defined(SKV_BACKEND_CUDA) // CPU rows only: two more cache types would add minutes to CI's CUDA build
  using plain_projected = projected<skv::sentence_kv, skv::bfloat16>;
  using lossless_projected = projected<skv::sentence_kv_lossless, skv::bfloat16>;
  v.push_back({"sentence_kv+prescreen", "bfloat16", factory<plain_projected>(), {}});
  v.push_back({"sentence_kv_lossless+prescreen", "bfloat16", factory<lossless_projected>(), {}});
#endif
  return v;
}
std::vector<preset_entry> presets_of(const char* type) {
  if (std::strcmp(type, "bfloat16") == 0) return presets_of<skv::bfloat16>(type, false);
  if (std::strcmp(type, "float") == 0) return presets_of<float>(type, true);
  return presets_of<skv::half>(type, true);
}
//! The bfloat16 preset called `name` (the first preset if there is none).
preset_entry preset_named(std::string_view name) {
  const auto all = presets_of("bfloat16");
  for (const auto& e : all)
    if (e.name == name) return e;
  return all.front();
}

// ---- machine reference: memory read bandwidth -----------------------------------------------------------------
struct read_chunks {
  const std::uint32_t* x;
  std::int64_t chunk;
  std::uint32_t* out;
  SKV_HOST_DEVICE void operator()(std::int64_t c) const {
    const std::uint32_t* p = x + c * chunk;
    std::uint32_t lane[16] = {};
    for (std::int64_t i = 0; i < chunk; i += 16)
      for (int e = 0; e < 16; ++e) lane[e] += p[i + e];
    std::uint32_t s = 0;
    for (int e = 0; e < 16; ++e) s ^= lane[e];
    out[c] = s;
  }
};
struct fill_index {
  std::uint32_t* x;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const { x[i] = std::uint32_t(i * 2654435761u); }
};

//! Best of `reps` parallel reads of a `bytes` buffer, in GB/s (1e9 bytes per second); on the CPU backends `s` may
//! be an executor (one thread: the single-core figure).
double measure_read_bandwidth(std::size_t bytes, int reps, skv::stream_t s = {}) {
  const std::int64_t chunk = 16384, n = std::int64_t(bytes / 4) / chunk * chunk, chunks = n / chunk;
  skv::fast_vector<std::uint32_t> x(std::size_t(n), 0u), out(std::size_t(chunks), 0u);
  skv::parallel_for(n, fill_index{skv::raw(x)});
  double best = 0;
  std::uint32_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock::now();
    skv::parallel_for(chunks, read_chunks{skv::raw(x), chunk, skv::raw(out)}, s);
    const double t = seconds_since(t0);
    best = std::max(best, double(n) * 4 / t / 1e9);
    sink ^= out[std::size_t(r % chunks)];
  }
  benchmark::DoNotOptimize(sink);
  return best;
}

double g_mem_bw = 0;    // GB/s, all threads, measured at start-up (and again at the start and end of the run)
double g_mem_bw_1t = 0; // GB/s, one thread (CPU backends), measured at start-up

#if !defined(SKV_BACKEND_CUDA)
double measure_read_bandwidth_1t(std::size_t bytes, int reps) {
  skv::executor one;
  one.threads = 1;
  return measure_read_bandwidth(bytes, reps, &one);
}
#endif

//! The last-level cache's bytes (Linux sysfs; 0 when unknown): benchmarks whose bytes fit there do not measure DRAM.
std::int64_t last_level_cache_bytes() {
  std::int64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::FILE* f = std::fopen(("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size").c_str(), "r");
    if (!f) continue;
    char buf[32] = {};
    if (std::fgets(buf, sizeof buf, f)) {
      char* end = nullptr;
      std::int64_t v = std::strtoll(buf, &end, 10);
      if (end && (*end == 'K' || *end == 'k')) v <<= 10;
      if (end && (*end == 'M' || *end == 'm')) v <<= 20;
      best = std::max(best, v);
    }
    std::fclose(f);
  }
  return best;
}

// ---- benchmark bodies -----------------------------------------------------------------------------------------
enum class stage { prefill_policy, select, fetch, attend, decode_step, decode_step_amortized };
const char* stage_name(stage s, bool dense) {
  switch (s) {
  case stage::prefill_policy:
    return "prefill_policy";
  case stage::select:
    return "select";
  case stage::fetch:
    return "fetch";
  case stage::attend:
    return dense ? "dense_attend" : "attend";
  case stage::decode_step:
    return "decode_step";
  default:
    return "decode_step_amortized";
  }
}

struct config {
  preset_entry preset;
  const shape_spec* shape;
  std::int64_t ctx;
  int budget; // 0: the preset's own (full_kv: everything)
  std::string key() const {
    return preset.name + "/" + preset.type + "/" + shape->name + "/" + std::to_string(ctx) + "/" +
           std::to_string(budget);
  }
};

//! The runner of the configuration being measured; consecutive stages of one configuration share it (its cache
//! keeps growing by one token per step, a few hundred tokens over all stages).
std::unique_ptr<runner> g_runner;             //!< the single-layer runner being measured
std::unique_ptr<model_runner> g_model_runner; //!< the whole-model runner being measured (one of the two at a time)
std::string g_runner_key, g_model_key;

runner& get_runner(const config& c) {
  auto& current = g_runner;
  auto& key = g_runner_key;
  if (!current || key != c.key()) {
    g_model_runner.reset();
    g_model_key.clear();
    current.reset();
    current = c.preset.make(c.ctx, *c.shape, c.budget);
    current->prefill();
    key = c.key();
  }
  return *current;
}

void set_bandwidth(benchmark::State& st, double bytes_per_iter, double seconds_per_iter) {
  const double gbps = seconds_per_iter > 0 ? bytes_per_iter / seconds_per_iter / 1e9 : 0;
  st.counters["GBps"] = gbps;
  st.counters["bw_frac"] = g_mem_bw > 0 ? gbps / g_mem_bw : 0;
  st.counters["bw_frac_1t"] = g_mem_bw_1t > 0 ? gbps / g_mem_bw_1t : 0;
  st.counters["bytes"] = bytes_per_iter; // compared with the last-level cache in the report
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

void run_prefill_policy(benchmark::State& st, const config& c) {
  runner& r = get_runner(c);
  r.ledger();
  double total = 0, offloaded = 0;
  std::vector<double> times;
  for (auto _ : st) {
    const auto t0 = clock::now();
    r.prefill();
    const double t = seconds_since(t0);
    st.SetIterationTime(t);
    total += t;
    times.push_back(t);
    offloaded += double(r.ledger().moved_to_slow);
  }
  const auto m = r.ledger();
  const double n = double(st.iterations());
  st.counters["offload_B"] = offloaded / n;
  st.counters["moved_B"] = 0;
  st.counters["fast_B"] = double(m.fast_bytes);
  st.counters["slow_B"] = double(m.slow_bytes);
  st.counters["tokens"] = double(r.retained()); // retained after prefill, summed over KV heads
  st.counters["median_us"] = median(times) * 1e6;
  const double input = double(c.ctx) * c.shape->kv_heads * c.shape->head_dim * 2 * r.kv_bytes_per_element();
  set_bandwidth(st, input, total / n);
}

void run_decode(benchmark::State& st, const config& c, stage s) {
  runner& r = get_runner(c);
  const bool amortized = s == stage::decode_step_amortized;
  const bool whole = amortized || s == stage::decode_step;
  if (!amortized)
    while (!r.warm) r.step(false); // reach a steady step: the open sentence holds >= 2 queries
  r.ledger();
  double total = 0, moved = 0, tokens = 0, dense = 0, bytes = 0;
  std::vector<double> times;
  std::int64_t i = 0;
  const double row = 2.0 * c.shape->head_dim * r.kv_bytes_per_element(); // K + V of one token, one KV head
  for (auto _ : st) {
    const bool boundary = amortized && i % 24 == 0; // sentences of 24 tokens
    double t;
    if (whole) {
      const auto t0 = clock::now();
      r.step(boundary);
      t = seconds_since(t0);
    } else {
      stage_times p;
      r.step_parts(false, p);
      t = s == stage::select ? p.select : s == stage::fetch ? p.fetch : p.attend;
    }
    st.SetIterationTime(t);
    total += t;
    times.push_back(t);
    const double mv = double(r.ledger().moved_to_fast), att = double(r.attended());
    moved += mv;
    tokens += att;
    dense += r.dense_step() ? 1 : 0;
    bytes += s == stage::select ? double(r.summary_bytes()) : s == stage::fetch ? mv : att * row;
    ++i;
  }
  const auto m = r.ledger();
  const double n = double(st.iterations());
  st.counters["moved_B"] = moved / n;
  st.counters["fast_B"] = double(m.fast_bytes);
  st.counters["slow_B"] = double(m.slow_bytes);
  st.counters["tokens"] = tokens / n;
  st.counters["dense_frac"] = dense / n;
  st.counters["median_us"] = median(times) * 1e6;
  set_bandwidth(st, bytes / n, total / n);
}

void run_prefill_attention(benchmark::State& st, std::int64_t ctx, const shape_spec& s) {
  using T = skv::bfloat16;
  auto in = get_inputs<T>(ctx, s);
  skv::fast_vector<float> out(std::size_t(ctx) * s.q_heads * s.head_dim);
  double total = 0;
  for (auto _ : st) {
    const auto t0 = clock::now();
    skv::dispatch_head_dim(s.head_dim, [&](auto d) {
      constexpr int D = decltype(d)::value;
      skv::parallel_for(causal_prefill_items(ctx, s.q_heads),
                        causal_prefill_attention<T, D>{skv::raw(in->q), skv::raw(in->k), skv::raw(in->v), skv::raw(out),
                                                       ctx, s.q_heads, s.kv_heads, 1.f / std::sqrt(float(s.head_dim))});
    });
    const double t = seconds_since(t0);
    st.SetIterationTime(t);
    total += t;
  }
  const double n = double(st.iterations());
  st.counters["GFLOPS"] = causal_prefill_flops(ctx, s.q_heads, s.head_dim) / (total / n) / 1e9;
  st.counters["tokens"] = double(ctx);
  const double input = double(ctx) * s.head_dim * (2.0 * s.kv_heads + s.q_heads) * sizeof(T);
  set_bandwidth(st, input, total / n);
}

// ---- registration ---------------------------------------------------------------------------------------------
std::string name_of(const char* stage, const char* preset, std::int64_t ctx, int budget, const shape_spec& s,
                    const char* type) {
  return std::string(stage) + "/" + preset + "/ctx:" + std::to_string(ctx) +
         "/budget:" + (budget > 0 ? std::to_string(budget) : std::string("all")) + "/shape:" + s.name + "/kv:" + type;
}

void register_config(const config& c, const std::vector<stage>& stages, bool quick) {
  const bool dense = c.preset.name == "full_kv";
  for (stage s : stages) {
    const std::string name =
        name_of(stage_name(s, dense), c.preset.name.c_str(), c.ctx, c.budget, *c.shape, c.preset.type);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), [c, s](benchmark::State& st) {
      if (s == stage::prefill_policy)
        run_prefill_policy(st, c);
      else
        run_decode(st, c, s);
    });
    b->UseManualTime();
    if (s == stage::prefill_policy) {
      b->Unit(benchmark::kMillisecond)->MinTime(quick ? 0.01 : 0.1);
    } else {
      // fixed step counts: each iteration appends a token, so the context must not drift far
      b->Unit(benchmark::kMicrosecond)
          ->Iterations(s == stage::decode_step_amortized ? (quick ? 24 : 72) : (quick ? 8 : 48));
    }
  }
}

// ---- whole models and batches ---------------------------------------------------------------------------------
struct model_bench {
  preset_entry preset;
  const shape_spec* shape;
  int budget;
  model_config model;
  std::string name() const {
    return name_of("model_step", preset.name.c_str(), model.ctx, budget, *shape, preset.type) +
           "/layers:" + std::to_string(model.layers) + "/depth:" + std::to_string(model.depth) +
           "/batch:" + std::to_string(model.batch);
  }
};

void run_model(benchmark::State& st, const model_bench& m) {
  if (!g_model_runner || g_model_key != m.name()) {
    g_runner.reset(); // one cache at a time: a 32-layer 32K cache takes GiBs
    g_runner_key.clear();
    g_model_runner.reset();
    g_model_runner = m.preset.make_model(*m.shape, m.budget, m.model);
    g_model_runner->prefill();
    g_model_key = m.name();
    for (int i = 0; i < 4; ++i) g_model_runner->step(); // warm-up: first touches of the fetch buffers
  }
  model_runner& r = *g_model_runner;
  r.ledger();
  std::vector<double> times;
  double total = 0, tokens = 0, moved = 0;
  for (auto _ : st) {
    const double t = r.step();
    st.SetIterationTime(t);
    times.push_back(t);
    total += t;
    moved += double(r.ledger().moved_to_fast);
    tokens += double(r.attended());
  }
  const auto led = r.ledger();
  const double n = double(st.iterations()), mean = total / n;
  st.counters["median_us"] = median(times) * 1e6;
  st.counters["tokens_per_s"] = mean > 0 ? m.model.batch / mean : 0;
  st.counters["layer_us"] = mean * 1e6 / m.model.layers;
  st.counters["tokens"] = tokens / n;
  st.counters["moved_B"] = moved / n;
  st.counters["fast_B"] = double(led.fast_bytes);
  st.counters["slow_B"] = double(led.slow_bytes);
}

//! Quick: a small stack of a small model (CI). Full: every preset over all 32 layers of llama3_8b at 32K, batch 1;
//! then ragged batches of 1, 4 and 16 sequences (32K down to ~16K) over 4 of the 32 layers (a batch of 16 over all
//! 32 layers would hold ~50 GiB), for the presets that differ in how they scale.
void register_model(bool quick) {
  std::vector<model_bench> runs;
  if (quick) {
    for (const char* p : {"sentence_kv_lossless", "pyramid_kv", "quest"})
      runs.push_back({preset_named(p), &smollm2, 512, {2048, 2, 2, 4}});
  } else {
    for (const auto& p : presets_of("bfloat16"))
      runs.push_back({p, &llama3_8b, p.name == "full_kv" ? 0 : 1024, {32768, 1, 32, 32}});
    for (int batch : {1, 4, 16})
      for (const char* p : {"full_kv", "sentence_kv_lossless", "sentence_kv", "snap_kv", "pyramid_kv", "quest"})
        runs.push_back(
            {preset_named(p), &llama3_8b, std::string_view(p) == "full_kv" ? 0 : 1024, {32768, batch, 4, 32}});
  }
  for (const auto& m : runs) {
    auto* b = benchmark::RegisterBenchmark(m.name().c_str(), [m](benchmark::State& st) { run_model(st, m); });
    b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(24); // one sentence cycle of every sequence
  }
}

#if !defined(SKV_BACKEND_CUDA)
// ---- beside a busy neighbour: how the decode step shares the cores ----------------------------------------------
//! How the steps run: `busy` = beside a busy_neighbour of as many threads as the machine has cores; `omp` = the
//! backend's default (OpenMP, spinning waits), `serial` = executor{.threads = 1}, the calling thread only.
enum class neighbour_mode { quiet_omp, quiet_serial, busy_omp, busy_serial };
const char* mode_name(neighbour_mode m) {
  switch (m) {
  case neighbour_mode::quiet_omp:
    return "quiet_omp";
  case neighbour_mode::quiet_serial:
    return "quiet_serial";
  case neighbour_mode::busy_omp:
    return "busy_omp";
  default:
    return "busy_serial";
  }
}

int machine_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

void run_neighbour(benchmark::State& st, const config& c, neighbour_mode m) {
  runner& r = get_runner(c);
  while (!r.warm) r.step(false);
  skv::executor serial;
  serial.threads = 1;
  const bool busy = m == neighbour_mode::busy_omp || m == neighbour_mode::busy_serial;
  r.stream = m == neighbour_mode::quiet_serial || m == neighbour_mode::busy_serial ? &serial : nullptr;
  std::unique_ptr<busy_neighbour> other;
  if (busy) other = std::make_unique<busy_neighbour>(machine_threads(), 20);
  const std::int64_t jobs0 = other ? other->jobs() : 0;
  const auto wall0 = clock::now();
  std::vector<double> times;
  for (auto _ : st) {
    const auto t0 = clock::now();
    r.step(false);
    const double t = seconds_since(t0);
    st.SetIterationTime(t);
    times.push_back(t);
  }
  const double wall = seconds_since(wall0);
  if (other) st.counters["neighbour_jobs_per_s"] = double(other->jobs() - jobs0) / wall;
  other.reset();
  r.stream = nullptr;
  st.counters["median_us"] = median(times) * 1e6;
  st.counters["threads"] = machine_threads();
}

void register_neighbour(bool quick) {
  if (quick) return;
  const preset_entry p = preset_named("sentence_kv_lossless");
  const config c{p, &llama3_8b, 32768, 1024};
  for (auto m : {neighbour_mode::quiet_omp, neighbour_mode::quiet_serial, neighbour_mode::busy_omp,
                 neighbour_mode::busy_serial}) {
    const std::string name =
        name_of("neighbour_step", p.name.c_str(), c.ctx, c.budget, *c.shape, p.type) + "/run:" + mode_name(m);
    auto* b = benchmark::RegisterBenchmark(name.c_str(), [c, m](benchmark::State& st) { run_neighbour(st, c, m); });
    b->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(48);
  }
}
#endif

//! The read-bandwidth reference, measured again as a benchmark at the start and the end of the run (the report takes
//! the best of these and the start-up figure: other load on the machine can only lower it).
void register_bandwidth(bool quick, const char* when) {
  auto* b = benchmark::RegisterBenchmark(
      (std::string("memory_read/reference/when:") + when).c_str(), [quick](benchmark::State& st) {
        double gbps = 0;
        for (auto _ : st) {
          const auto t0 = clock::now();
          gbps = measure_read_bandwidth(quick ? (std::size_t(256) << 20) : (std::size_t(1) << 30), 8);
          st.SetIterationTime(seconds_since(t0));
        }
        st.counters["GBps"] = gbps;
        g_mem_bw = std::max(g_mem_bw, gbps);
      });
  b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);
}

void register_all(bool quick) {
  register_bandwidth(quick, "start");
  const std::vector<std::int64_t> contexts =
      quick ? std::vector<std::int64_t>{2048} : std::vector<std::int64_t>{4096, 16384, 32768, 65536, 131072};
  const std::vector<int> budgets = quick ? std::vector<int>{1024} : std::vector<int>{512, 1024};
  const std::vector<const shape_spec*> shapes =
      quick ? std::vector<const shape_spec*>{&smollm2} : std::vector<const shape_spec*>{&llama3_8b, &smollm2};
  const std::vector<stage> all = {stage::prefill_policy, stage::select,      stage::fetch,
                                  stage::attend,         stage::decode_step, stage::decode_step_amortized};
  for (const shape_spec* s : shapes)
    for (std::int64_t ctx : contexts) {
      if (ctx <= 32768) {
        auto* b = benchmark::RegisterBenchmark(name_of("prefill_attention", "dense", ctx, 0, *s, "bfloat16").c_str(),
                                               [ctx, s](benchmark::State& st) { run_prefill_attention(st, ctx, *s); });
        b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);
      }
      for (const auto& p : presets_of("bfloat16")) {
        const bool dense = p.name == "full_kv";
        for (int budget : dense ? std::vector<int>{0} : budgets) register_config({p, s, ctx, budget}, all, quick);
      }
      if (s == &llama3_8b)
        for (const auto& p : sketched_presets())
          register_config({p, s, ctx, 1024}, {stage::select, stage::decode_step}, quick);
      // float and half K/V: the attention-bound stages of the dense baseline and SentenceKV, long contexts
      if (!quick && s == &llama3_8b && ctx >= 65536)
        for (const char* type : {"float", "half"})
          for (const auto& p : presets_of(type)) {
            const bool dense = p.name == "full_kv";
            register_config({p, s, ctx, dense ? 0 : 1024}, {stage::attend, stage::decode_step}, quick);
          }
    }
  register_model(quick);
#if !defined(SKV_BACKEND_CUDA)
  register_neighbour(quick);
#endif
  register_bandwidth(quick, "end");
}

} // namespace
} // namespace skv_bench

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else
      args.push_back(argv[i]);
  }
  int n = int(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  skv_bench::g_mem_bw =
      skv_bench::measure_read_bandwidth(quick ? (std::size_t(256) << 20) : (std::size_t(1) << 30), quick ? 3 : 8);
#if !defined(SKV_BACKEND_CUDA)
  skv_bench::g_mem_bw_1t =
      skv_bench::measure_read_bandwidth_1t(quick ? (std::size_t(256) << 20) : (std::size_t(1) << 30), quick ? 3 : 8);
  benchmark::AddCustomContext("mem_read_1t_GBps", std::to_string(skv_bench::g_mem_bw_1t));
#endif
  benchmark::AddCustomContext("llc_bytes", std::to_string(skv_bench::last_level_cache_bytes()));
  std::fprintf(stderr, "skv-bench: backend %s, measured memory read bandwidth %.1f GB/s (one thread: %.1f GB/s)\n",
               SKV_BACKEND_NAME, skv_bench::g_mem_bw, skv_bench::g_mem_bw_1t);
  benchmark::AddCustomContext("skv_backend", SKV_BACKEND_NAME);
  benchmark::AddCustomContext("mem_read_GBps", std::to_string(skv_bench::g_mem_bw));
  benchmark::AddCustomContext("skv_bench_mode", quick ? "quick" : "full");
#if defined(_OPENMP)
  benchmark::AddCustomContext("omp_threads", std::to_string(omp_get_max_threads()));
#endif
  skv_bench::register_all(quick);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
