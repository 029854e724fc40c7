#include "tasks.hpp"

#include <skv/segmenter/sentence_segmenter.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

namespace skv::eval {

namespace {

constexpr std::string_view begin_of_text = "<|begin_of_text|>";
constexpr std::string_view start_header = "<|start_header_id|>";
constexpr std::string_view end_header = "<|end_header_id|>";
constexpr std::string_view end_of_turn = "<|eot_id|>";

std::string_view trim_left(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    return b == std::string_view::npos ? std::string_view{} : s.substr(b);
}

} // namespace

std::string_view trim(std::string_view s) {
    const auto ws = " \t\r\n";
    const auto b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path.string() + ": cannot open");
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

chat_turns parse_llama3_prompt(std::string_view in) {
    if (in.starts_with(begin_of_text)) in.remove_prefix(begin_of_text.size());
    chat_turns t;
    bool have_user = false;
    while (!trim(in).empty()) {
        in = trim_left(in);
        if (!in.starts_with(start_header))
            throw std::invalid_argument("not a Llama-3 chat prompt: expected " + std::string(start_header) + " at '" +
                                        std::string(in.substr(0, 40)) + "'");
        in.remove_prefix(start_header.size());
        const auto e = in.find(end_header);
        if (e == std::string_view::npos)
            throw std::invalid_argument("not a Llama-3 chat prompt: a header has no " + std::string(end_header));
        const std::string_view role = trim(in.substr(0, e));
        in.remove_prefix(e + end_header.size());
        const auto eot = in.find(end_of_turn);
        const std::string_view text = in.substr(0, eot);
        if (eot == std::string_view::npos) {
            if (role != "assistant")
                throw std::invalid_argument("not a Llama-3 chat prompt: the " + std::string(role) +
                                            " turn has no " + std::string(end_of_turn));
            t.answer_prefix = std::string(trim_left(text));
            in = {};
            break;
        }
        in.remove_prefix(eot + end_of_turn.size());
        if (role == "system")
            t.system = std::string(trim(text));
        else if (role == "user") {
            if (have_user) throw std::invalid_argument("Llama-3 chat prompt with more than one user turn");
            t.user = std::string(trim(text));
            have_user = true;
        } else if (role == "assistant") {
            throw std::invalid_argument("Llama-3 chat prompt with a completed assistant turn (multi-turn)");
        } else {
            throw std::invalid_argument("Llama-3 chat prompt with unknown role '" + std::string(role) + "'");
        }
    }
    if (!have_user) throw std::invalid_argument("Llama-3 chat prompt without a user turn");
    return t;
}

std::string to_chatml(const chat_turns& t, std::string_view default_system) {
    return llama::chat_ml(t.user, t.system.empty() ? default_system : std::string_view(t.system)) + t.answer_prefix;
}

std::vector<niah_item> read_niah_jsonl(const std::filesystem::path& path,
                                       const std::function<void(int, const std::string&)>& on_error) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path.string() + ": cannot open");
    std::vector<niah_item> items;
    std::string line;
    for (int n = 1; std::getline(f, line); ++n) {
        if (trim(line).empty()) continue;
        try {
            const auto j = nlohmann::json::parse(line);
            if (!j.is_object()) throw std::invalid_argument("not a JSON object");
            if (!j.contains("input") || !j["input"].is_string())
                throw std::invalid_argument("field 'input' missing or not a string");
            if (!j.contains("outputs") || !j["outputs"].is_array() || j["outputs"].empty())
                throw std::invalid_argument("field 'outputs' missing or not a non-empty array");
            niah_item it;
            it.line = n;
            it.index = n - 1;
            if (j.contains("index")) {
                if (!j["index"].is_number_integer()) throw std::invalid_argument("field 'index' is not an integer");
                it.index = j["index"].get<std::int64_t>();
            }
            it.input = j["input"].get<std::string>();
            for (const auto& o : j["outputs"]) {
                if (!o.is_string()) throw std::invalid_argument("field 'outputs' holds a non-string");
                it.outputs.push_back(o.get<std::string>());
            }
            items.push_back(std::move(it));
        } catch (const nlohmann::json::exception& e) {
            on_error(n, std::string("malformed JSON: ") + e.what());
        } catch (const std::invalid_argument& e) {
            on_error(n, e.what());
        }
    }
    if (f.bad()) throw std::runtime_error(path.string() + ": read error");
    return items;
}

void check_context(std::int64_t n_prompt, std::int64_t n_new, std::int64_t n_ctx) {
    if (n_prompt < 1) throw context_error("empty prompt");
    if (n_prompt + n_new > n_ctx)
        throw context_error("prompt of " + std::to_string(n_prompt) + " tokens + " + std::to_string(n_new) +
                            " to generate exceeds the model's context of " + std::to_string(n_ctx) +
                            " tokens (llama.context_length)");
}

passkey_item make_passkey(const llama::tokenizer& tok, int length, double depth, std::uint32_t seed) {
    if (!(depth >= 0.0 && depth <= 1.0))
        throw std::invalid_argument("passkey depth " + std::to_string(depth) + " outside [0, 1]");
    const std::string intro = "There is an important info hidden inside a lot of irrelevant text. Find it and "
                              "memorize them. I will quiz you about the important information there.";
    const std::string filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    const std::string question = "What is the pass key? The pass key is";
    std::mt19937 rng(seed);
    passkey_item item;
    item.key = std::to_string(std::uniform_int_distribution<int>(10000, 99999)(rng));
    item.depth = depth;
    const std::string needle = "The pass key is " + item.key + ". Remember it. " + item.key + " is the pass key.";

    const auto count = [&](const std::string& s) { return static_cast<int>(tok.encode(s).size()); };
    const int fixed = count(intro + "\n" + needle + "\n" + question) + 2;
    const int unit = count(" " + filler);
    const int units = std::max(2, (length - fixed) / unit);
    const int before = static_cast<int>(std::lround(depth * units));
    auto repeat = [&](int n) {
        std::string s;
        for (int i = 0; i < n; ++i) s += (i ? " " : "") + filler;
        return s;
    };
    item.prompt = intro + "\n";
    if (before > 0) item.prompt += repeat(before) + "\n";
    item.prompt += needle + "\n";
    if (units - before > 0) item.prompt += repeat(units - before) + "\n";
    item.prompt += question;
    return item;
}

std::vector<std::string> decoded_vocab(const llama::tokenizer& tok) {
    std::vector<std::string> v(static_cast<std::size_t>(tok.n_vocab()));
    for (std::int32_t i = 0; i < tok.n_vocab(); ++i) v[static_cast<std::size_t>(i)] = tok.token_to_piece(i, false);
    return v;
}

std::vector<std::int32_t> stop_ids(const llama::tokenizer& tok, const llama::hparams& hp) {
    std::vector<std::int32_t> s;
    auto add = [&](std::int32_t id) {
        if (id >= 0 && std::find(s.begin(), s.end(), id) == s.end()) s.push_back(id);
    };
    add(tok.eos_id());
    add(hp.eos_id);
    for (const char* t : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>"})
        if (auto id = tok.find_token(t)) add(*id);
    return s;
}

std::optional<int> variant::budget_for(std::int64_t n_prompt) const {
    if (budget_fraction)
        return std::max(1, static_cast<int>(std::lround(*budget_fraction * static_cast<double>(n_prompt))));
    return budget;
}

std::vector<variant> make_variants(const std::vector<std::string>& policies, const std::vector<int>& budgets,
                                   const std::vector<double>& fractions) {
    for (double f : fractions)
        if (!(f > 0.0 && f <= 1.0))
            throw std::invalid_argument("budget fraction " + std::to_string(f) + " outside (0, 1]");
    std::vector<variant> out;
    for (const auto& name : policies) {
        const auto& p = find_preset(name);
        if (!p.has_budget || (budgets.empty() && fractions.empty())) {
            out.push_back({p.name, p.has_budget ? std::optional<int>(p.default_budget) : std::nullopt, std::nullopt});
            continue;
        }
        for (int b : budgets) out.push_back({p.name, b, std::nullopt});
        for (double f : fractions) out.push_back({p.name, std::nullopt, f});
    }
    return out;
}

std::string to_string(protocol p) { return p == protocol::prefill ? "prefill" : "question_after"; }

protocol parse_protocol(std::string_view name) {
    if (name == "prefill") return protocol::prefill;
    if (name == "question_after" || name == "question-after") return protocol::question_after;
    throw std::invalid_argument("protocol '" + std::string(name) + "' unknown; allowed: prefill, question_after");
}

evaluator::evaluator(llama::model& model, const llama::tokenizer& tok, std::vector<variant> variants, kv_dtype dtype)
    : model_(model), tok_(tok), variants_(std::move(variants)), dtype_(dtype) {
    if (variants_.empty()) throw std::invalid_argument("evaluator: no policy to evaluate");
    const auto vocab = decoded_vocab(tok);
    boundaries_ = skv::sentence_boundaries(vocab);
    stops_ = stop_ids(tok, model.params());
}

skv::model_shape evaluator::shape() const {
    const auto& hp = model_.params();
    return skv::model_shape{hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim};
}

cache_config evaluator::config(const variant& v, std::int64_t n_prompt) const {
    cache_config c;
    c.budget = v.budget_for(n_prompt);
    c.dtype = dtype_;
    if (find_preset(v.policy).needs_boundaries) c.boundaries = boundaries_;
    return c;
}

void evaluator::validate(std::int64_t n_prompt) const {
    for (const auto& v : variants_) make_cache(v.policy, shape(), config(v, n_prompt));
}

void evaluator::run(std::span<const std::int32_t> prompt, int n_new, bool track_recall, const visit_fn& visit) {
    check_context(static_cast<std::int64_t>(prompt.size()), n_new, model_.params().n_ctx_train);
    prefill_record record;
    const bool share = variants_.size() > 1;
    const auto n_prompt = static_cast<std::int64_t>(prompt.size());
    std::vector<float> logits;
    {
        skv_attention_backend first(model_.params(),
                                    make_cache(variants_[0].policy, shape(), config(variants_[0], n_prompt)),
                                    {track_recall, share ? &record : nullptr});
        const auto t0 = std::chrono::steady_clock::now();
        logits = model_.prefill(prompt, first);
        prefill_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        visit(0, first, logits);
    }
    const int n = static_cast<int>(prompt.size());
    for (std::size_t i = 1; i < variants_.size(); ++i) {
        skv_attention_backend b(model_.params(),
                                make_cache(variants_[i].policy, shape(), config(variants_[i], n_prompt)),
                                {track_recall, nullptr});
        b.prefill_from(record);
        model_.rewind(n);
        visit(i, b, logits);
    }
}

std::vector<std::int32_t> evaluator::generate(skv_attention_backend& backend, std::vector<float> logits, int max_new) {
    std::vector<std::int32_t> out;
    for (int i = 0; i < max_new; ++i) {
        const std::int32_t next = llama::argmax(logits);
        if (is_stop(next)) break;
        out.push_back(next);
        if (i + 1 < max_new) logits = model_.decode(next, backend);
    }
    return out;
}

std::vector<evaluator::stream_result> evaluator::run_item(std::span<const std::int32_t> ids, int n_context,
                                                         int max_new, std::span<const protocol> protocols,
                                                         int max_streams) {
    const auto t_item = std::chrono::steady_clock::now();
    const int n = static_cast<int>(ids.size());
    if (n_context < 1 || n_context > n)
        throw std::invalid_argument("run_item: n_context = " + std::to_string(n_context) + " outside [1, " +
                                    std::to_string(n) + "]");
    if (max_streams < 1) throw std::invalid_argument("run_item: max_streams = " + std::to_string(max_streams) + " < 1");
    check_context(n, max_new, model_.params().n_ctx_train);

    // The shared forward pass: exact attention, Q/K/V recorded (the recording backend's own cache is full_kv).
    prefill_record record;
    std::vector<float> prompt_logits;
    {
        skv_attention_backend rec(model_.params(), make_cache("full_kv", shape(), cache_config{}), {false, &record});
        const auto t0 = std::chrono::steady_clock::now();
        prompt_logits = model_.prefill(ids, rec);
        item_forward_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    std::vector<stream_result> results;
    for (protocol p : protocols)
        for (std::size_t v = 0; v < variants_.size(); ++v)
            results.push_back({p, v, variants_[v].budget_for(n), {}, 0, 0, 0, 0, 0});

    for (std::size_t g0 = 0; g0 < results.size(); g0 += static_cast<std::size_t>(max_streams)) {
        const std::size_t g1 = std::min(results.size(), g0 + static_cast<std::size_t>(max_streams));
        const auto t_group = std::chrono::steady_clock::now();
        std::vector<std::unique_ptr<skv_attention_backend>> backends;
        std::vector<std::vector<float>> logits(g1 - g0);
        std::vector<std::size_t> after; // streams (group-relative) that still have the question to read
        for (std::size_t s = g0; s < g1; ++s) {
            const auto& r = results[s];
            backends.push_back(std::make_unique<skv_attention_backend>(
                model_.params(), make_cache(variants_[r.variant].policy, shape(), config(variants_[r.variant], n)),
                skv_attention_backend::options{}));
            if (r.proto == protocol::prefill) {
                backends.back()->prefill_from(record);
                logits[s - g0] = prompt_logits;
            } else {
                backends.back()->prefill_from(record, n_context);
                after.push_back(s - g0);
            }
        }
        const auto vocab = static_cast<std::size_t>(model_.params().n_vocab);
        auto run_batch = [&](const std::vector<std::size_t>& rows, const std::vector<std::int32_t>& toks) {
            std::vector<llama::attention_backend*> bs;
            for (std::size_t r : rows) bs.push_back(backends[r].get());
            const auto out = model_.decode_batch(toks, bs);
            for (std::size_t i = 0; i < rows.size(); ++i)
                logits[rows[i]].assign(out.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                                       out.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab));
        };
        // question_after: the question (and the turn's end, the answer's start) through the decode path.
        if (!after.empty()) {
            model_.rewind(n_context);
            for (int t = n_context; t < n; ++t)
                run_batch(after, std::vector<std::int32_t>(after.size(), ids[static_cast<std::size_t>(t)]));
        }
        // Every stream is now at position n: greedy generation in lockstep.
        model_.rewind(n);
        std::vector<std::size_t> active(g1 - g0);
        std::iota(active.begin(), active.end(), std::size_t{0});
        for (int step = 0; step < max_new && !active.empty(); ++step) {
            std::vector<std::size_t> next_rows;
            std::vector<std::int32_t> next_toks;
            for (std::size_t r : active) {
                const std::int32_t tok = llama::argmax(logits[r]);
                if (is_stop(tok)) continue;
                results[g0 + r].answer.push_back(tok);
                if (step + 1 < max_new) {
                    next_rows.push_back(r);
                    next_toks.push_back(tok);
                }
            }
            if (!next_rows.empty()) run_batch(next_rows, next_toks); // position n + step; n_past advances
            active = std::move(next_rows);
        }
        const double group_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_group).count();
        for (std::size_t s = g0; s < g1; ++s) {
            auto& b = *backends[s - g0];
            results[s].decode_steps = b.steps();
            results[s].step_seconds = b.step_seconds();
            const auto m = b.cache().ledger();
            results[s].fast_bytes = double(m.fast_bytes);
            results[s].slow_bytes = double(m.slow_bytes);
            results[s].group_seconds = group_seconds;
        }
    }
    item_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_item).count();
    return results;
}

double token_nll(std::span<const float> logits, std::int32_t target) {
    if (target < 0 || static_cast<std::size_t>(target) >= logits.size())
        throw std::out_of_range("token_nll: target " + std::to_string(target) + " outside the vocabulary");
    const double mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (float x : logits) z += std::exp(double(x) - mx);
    return mx + std::log(z) - double(logits[static_cast<std::size_t>(target)]);
}

} // namespace skv::eval
