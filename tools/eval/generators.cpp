#include "generators.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <unordered_set>

#include "tasks.hpp"

namespace skv::eval {

namespace {

// Keys of the needles: adjective-noun pairs, as RULER's ("cloudy-quince").
constexpr std::array adjectives{"amber",  "brisk",  "calm",   "cloudy", "crimson", "dusty",  "eager",  "faint",
                                "fuzzy",  "gentle", "glassy", "golden", "hollow",  "humble", "icy",    "jolly",
                                "keen",   "lively", "lucky",  "misty",  "narrow",  "nimble", "odd",    "pale",
                                "plucky", "quiet",  "rapid",  "rusty",  "sandy",   "silent", "silver", "sleepy",
                                "smoky",  "snowy",  "solid",  "sturdy", "sunny",   "swift",  "tame",   "tidy",
                                "vast",   "velvet", "vivid",  "wary",   "windy",   "witty",  "young",  "zesty"};
constexpr std::array nouns{"anchor", "badger", "beacon",  "bison",   "canyon", "cedar",   "comet",   "coral",
                           "falcon", "fern",   "fjord",   "garnet",  "geyser", "harbor",  "heron",   "iris",
                           "jackal", "kettle", "lagoon",  "lantern", "lemur",  "maple",   "meadow",  "nectar",
                           "oasis",  "orchid", "otter",   "pebble",  "pepper", "quartz",  "quince",  "raven",
                           "reef",   "saddle", "sparrow", "spruce",  "summit", "thistle", "tundra",  "turnip",
                           "valley", "walnut", "willow",  "wombat",  "yarrow", "zephyr",  "glacier", "marble"};

const std::vector<std::string> task_names{"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt",
                                          "cwe",         "fwe",           "qa_cloze"};

int count_tokens(const llama::tokenizer& tok, std::string_view s) { return static_cast<int>(tok.encode(s).size()); }

// A random value of `digits` decimal digits (no leading zero).
std::string random_number(std::mt19937& rng, int digits) {
  int lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(std::uniform_int_distribution<int>(lo, lo * 10 - 1)(rng));
}

// `n` distinct strings from successive `draw()`s, in the order first drawn.
template <class Draw>
std::vector<std::string> distinct(int n, Draw draw) {
  std::set<std::string> seen;
  std::vector<std::string> out;
  while (static_cast<int>(out.size()) < n)
    if (auto s = draw(); seen.insert(s).second) out.push_back(std::move(s));
  return out;
}

// An adjective-noun key. The noun is drawn first, explicitly: the two draws used to be operands of one `+`, whose
// order C++ leaves to the compiler (GCC drew the noun first, Clang the adjective), so a seed gave other keys
// under Clang. GCC's order is kept, so the items measured so far stay the same.
std::string random_key(std::mt19937& rng) {
  const char* noun = nouns[rng() % nouns.size()];
  const char* adjective = adjectives[rng() % adjectives.size()];
  return std::string(adjective) + "-" + noun;
}

// `n` random letters from `first` ('A' or 'a') on.
std::string random_letters(std::mt19937& rng, int n, char first) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>(first + rng() % 26);
  return s;
}

std::string join(const std::vector<std::string>& v, std::string_view sep, std::string_view last_sep) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += (i + 1 == v.size() ? last_sep : sep);
    s += v[i];
  }
  return s;
}

// The document: haystack sentences from a seeded start, `budget` tokens in all, with each fact inserted before the
// sentence at its depth (facts sorted by depth keep their order).
std::string haystack_document(const haystack& hay, std::size_t start, int budget,
                              std::vector<std::pair<double, std::string>> facts) {
  std::vector<std::size_t> picked;
  int used = 0;
  for (std::size_t i = 0; used < budget; ++i) {
    const std::size_t s = (start + i) % hay.size();
    picked.push_back(s);
    used += hay.tokens(s);
  }
  std::stable_sort(facts.begin(), facts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string doc;
  std::size_t f = 0;
  for (std::size_t i = 0; i <= picked.size(); ++i) {
    while (f < facts.size() && std::lround(facts[f].first * double(picked.size())) <= long(i)) {
      doc += (doc.empty() ? "" : " ") + facts[f].second;
      ++f;
    }
    if (i < picked.size()) doc += (doc.empty() ? "" : " ") + hay.sentence(picked[i]);
  }
  return doc;
}

// Builds an item twice: once with the first estimate of the document's budget, then corrected by what the whole
// prompt measured, so that it lands within a few tokens of `length`.
// `tokens_per_unit`: about how many tokens one unit of the budget adds.
template <class Build> // Build(int budget) -> task_item
task_item sized(const llama::tokenizer& tok, int length, std::string_view system, int estimate, double tokens_per_unit,
                Build build) {
  int budget = std::max(16, estimate);
  task_item it = build(budget);
  for (int pass = 0; pass < 3; ++pass) {
    const int total = static_cast<int>(tokenize_item(tok, it, system).ids.size());
    if (std::abs(total - length) <= std::max(8, length / 200)) break;
    budget = std::max(16, budget + static_cast<int>(std::lround(double(length - total) / tokens_per_unit)));
    it = build(budget);
  }
  return it;
}

int overhead(const llama::tokenizer& tok, const task_item& it, std::string_view system) {
  return count_tokens(tok, system) + count_tokens(tok, it.instruction) + count_tokens(tok, it.question) +
         count_tokens(tok, it.answer_prefix) + 16;
}

} // namespace

const std::vector<std::string>& generated_task_names() { return task_names; }
bool is_generated_task(std::string_view name) {
  return std::find(task_names.begin(), task_names.end(), name) != task_names.end();
}

haystack::haystack(const llama::tokenizer& tok, std::string_view text) {
  std::string cur;
  auto flush = [&] {
    const auto t = trim(cur);
    if (!t.empty()) sentences_.emplace_back(t);
    cur.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      // A line break inside a paragraph joins lines; an empty line ends the sentence.
      if (i + 1 < text.size() && (text[i + 1] == '\n' || text[i + 1] == '\r'))
        flush();
      else
        cur += ' ';
      continue;
    }
    cur += (c == '\t') ? ' ' : c;
    if ((c == '.' || c == '!' || c == '?') &&
        (i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1]))))
      flush();
  }
  flush();
  // Collapse runs of spaces inside sentences.
  for (auto& s : sentences_) {
    std::string o;
    for (char c : s)
      if (!(c == ' ' && !o.empty() && o.back() == ' ')) o += c;
    s = std::move(o);
  }
  if (sentences_.size() < 8)
    throw std::invalid_argument("haystack: " + std::to_string(sentences_.size()) +
                                " sentences found; a haystack needs at least 8");
  tokens_.reserve(sentences_.size());
  std::unordered_set<std::string> seen;
  for (const auto& s : sentences_) {
    tokens_.push_back(count_tokens(tok, " " + s));
    std::string w;
    for (std::size_t i = 0; i <= s.size(); ++i) {
      const char c = i < s.size() ? s[i] : ' ';
      if (std::isalpha(static_cast<unsigned char>(c))) {
        w += c;
        continue;
      }
      const bool lower = !w.empty() && std::all_of(w.begin(), w.end(), [](char x) { return x >= 'a' && x <= 'z'; });
      if (lower && w.size() >= 4 && w.size() <= 10 && seen.insert(w).second) words_.push_back(w);
      w.clear();
    }
  }
}

task_item generate_item(const llama::tokenizer& tok, const haystack& hay, std::string_view name,
                        const generator_options& o) {
  if (!is_generated_task(name))
    throw std::invalid_argument("task '" + std::string(name) +
                                "' is not a generated task; allowed: " + join(task_names, ", ", ", "));
  if (!(o.depth >= 0.0 && o.depth <= 1.0))
    throw std::invalid_argument("depth " + std::to_string(o.depth) + " outside [0, 1]");
  if (o.length < 256)
    throw std::invalid_argument("length " + std::to_string(o.length) + " tokens: a generated item needs >= 256");
  // One stream per (task, seed): the same seed gives another item for another task.
  std::seed_seq seq{o.seed, static_cast<std::uint32_t>(std::hash<std::string_view>{}(name))};
  std::mt19937 rng(seq);
  const std::string system(llama::smollm_system_prompt);
  const std::size_t start = rng() % hay.size();
  std::uniform_real_distribution<double> unit(0.0, 1.0);

  task_item base;
  base.task = std::string(name);
  base.depth = o.depth;

  auto with_haystack = [&](task_item it, std::vector<std::pair<double, std::string>> facts) {
    std::vector<std::string> fact_texts;
    for (const auto& f : facts) fact_texts.push_back(f.second);
    const int estimate = o.length - overhead(tok, it, system) - count_tokens(tok, join(fact_texts, " ", " "));
    return sized(tok, o.length, system, estimate, 1.0, [&](int budget) {
      task_item x = it;
      x.context = haystack_document(hay, start, budget, facts);
      return x;
    });
  };

  if (name.starts_with("niah_")) {
    const std::string needle_intro = "One of the special magic numbers for ";
    base.instruction = "Some special magic numbers are hidden within the following text. Make sure to memorize "
                       "it. I will quiz you about the numbers afterwards.";
    const int n_needles = name == "niah_single" ? 1 : 4;
    const bool same_key = name == "niah_multivalue";
    const auto keys = distinct(same_key ? 1 : n_needles, [&] { return random_key(rng); });
    const auto values = distinct(n_needles, [&] { return random_number(rng, 7); });
    std::vector<std::pair<double, std::string>> facts;
    for (int i = 0; i < n_needles; ++i) {
      const double d = i == 0 ? o.depth : unit(rng);
      facts.emplace_back(d,
                         needle_intro + keys[same_key ? 0 : std::size_t(i)] + " is: " + values[std::size_t(i)] + ".");
    }
    if (name == "niah_single" || name == "niah_multikey") {
      base.question = "What is the special magic number for " + keys[0] + " mentioned in the provided text?";
      base.answer_prefix = "The special magic number for " + keys[0] + " mentioned in the provided text is";
      base.outputs = {values[0]};
      base.max_new = 24;
    } else if (same_key) {
      base.question = "What are all the special magic numbers for " + keys[0] + " mentioned in the provided text?";
      base.answer_prefix = "The special magic numbers for " + keys[0] + " mentioned in the provided text are";
      base.outputs = values;
      base.max_new = 64;
    } else {
      const std::string ks = join(keys, ", ", ", and ");
      base.question = "What are all the special magic numbers for " + ks + " mentioned in the provided text?";
      base.answer_prefix = "The special magic numbers for " + ks + " mentioned in the provided text are";
      base.outputs = values;
      base.max_new = 64;
    }
    return with_haystack(base, facts);
  }
  if (name == "vt") {
    // One chain of 4 hops: VAR A = 12345, VAR B = VAR A, ..., at increasing depths from `depth`.
    const std::string value = random_number(rng, 5);
    const auto vars = distinct(5, [&] { return random_letters(rng, 5, 'A'); });
    std::vector<double> depths{o.depth};
    for (int i = 1; i < 5; ++i) depths.push_back(o.depth + (1.0 - o.depth) * unit(rng));
    std::sort(depths.begin() + 1, depths.end());
    std::vector<std::pair<double, std::string>> facts;
    facts.emplace_back(depths[0], "VAR " + vars[0] + " = " + value + ".");
    for (std::size_t i = 1; i < 5; ++i) facts.emplace_back(depths[i], "VAR " + vars[i] + " = VAR " + vars[i - 1] + ".");
    base.instruction = "Memorize and track the chain(s) of variable assignment hidden in the following text.";
    base.question = "Question: Find all variables that are assigned the value " + value + " in the text above.";
    base.answer_prefix = "Answer: According to the chain(s) of variable assignment in the text above, 5 variables "
                         "are assigned the value " +
                         value + ", they are:";
    base.outputs = vars;
    base.max_new = 32;
    return with_haystack(base, facts);
  }
  if (name == "cwe") {
    // A numbered list of the haystack's own words: 10 of them many times each, the others a few times.
    const auto& vocab = hay.words();
    if (vocab.size() < 40)
      throw std::invalid_argument("haystack: " + std::to_string(vocab.size()) +
                                  " distinct lower-case words of 4-10 letters; cwe needs at least 40");
    std::vector<std::size_t> order(vocab.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::string> common;
    for (int i = 0; i < 10; ++i) common.push_back(vocab[order[std::size_t(i)]]);
    base.instruction = "Below is a numbered list of words. In these words, some appear more often than others. "
                       "Memorize the ones that appear most often.";
    base.question = "Question: What are the 10 most common words in the above list?";
    base.answer_prefix = "Answer: The top 10 words that appear most often in the list are:";
    base.outputs = common;
    base.max_new = 64;
    const std::uint32_t list_seed = rng();
    const int per_entry = std::max(1, count_tokens(tok, " 100. " + common[0]));
    const int est_entries = std::max(40, (o.length - overhead(tok, base, system)) / per_entry);
    // RULER repeats the common words 30 times and the others 3; a short list scales both down so that the
    // common words stay about 40% of it.
    const int freq_cw = std::clamp(est_entries * 4 / 100, 4, 30), freq_ucw = freq_cw >= 8 ? 3 : 2;
    const int n_cw_entries = 10 * freq_cw;
    return sized(tok, o.length, system, est_entries, double(per_entry), [&](int entries) {
      const auto n_uncommon = static_cast<std::size_t>(std::max(4, (entries - n_cw_entries) / freq_ucw));
      if (n_uncommon + 10 > vocab.size())
        throw std::invalid_argument("haystack: " + std::to_string(vocab.size()) +
                                    " distinct lower-case words of 4-10 letters; cwe at " + std::to_string(o.length) +
                                    " tokens needs about " + std::to_string(n_uncommon + 10));
      std::vector<std::string> words;
      for (auto& c : common)
        for (int r = 0; r < freq_cw; ++r) words.push_back(c);
      for (std::size_t u = 0; u < n_uncommon; ++u)
        for (int r = 0; r < freq_ucw; ++r) words.push_back(vocab[order[10 + u]]);
      std::mt19937 list_rng(list_seed);
      std::shuffle(words.begin(), words.end(), list_rng);
      task_item x = base;
      for (std::size_t i = 0; i < words.size(); ++i)
        x.context += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
      return x;
    });
  }
  if (name == "fwe") {
    // Coded words with Zipf counts (alpha 2): the three most frequent have counts c, c/4, c/9 (distinct, above
    // every other word's c/16).
    const auto vocab = distinct(400, [&] { return random_letters(rng, 5, 'a'); });
    base.instruction = "Read the following coded text and track the frequency of each coded word. Find the three "
                       "most frequently appeared coded words.";
    base.question = "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three "
                    "most frequently appeared words in the above coded text?";
    base.answer_prefix = "Answer: According to the coded text above, the three most frequently appeared words are:";
    base.outputs = {vocab[0], vocab[1], vocab[2]};
    base.max_new = 32;
    const std::uint32_t text_seed = rng();
    const int per_word = std::max(1, count_tokens(tok, " " + vocab[5]));
    return sized(tok, o.length, system, (o.length - overhead(tok, base, system)) / per_word, double(per_word),
                 [&](int n_words) {
                   // Counts c / (i+1)^2 with c chosen so that the total is about n_words (sum 1/i^2 -> pi^2/6).
                   const double c = std::max(16.0, double(n_words) / 1.6449);
                   std::vector<std::string> words;
                   for (std::size_t i = 0; i < vocab.size(); ++i) {
                     const int count = static_cast<int>(std::floor(c / double((i + 1) * (i + 1))));
                     for (int r = 0; r < count; ++r) words.push_back(vocab[i]);
                   }
                   std::mt19937 text_rng(text_seed);
                   std::shuffle(words.begin(), words.end(), text_rng);
                   task_item x = base;
                   for (std::size_t i = 0; i < words.size(); ++i) {
                     x.context += (i ? " " : "") + words[i];
                     if (i % 20 == 19) x.context += " ....";
                   }
                   return x;
                 });
  }
  // qa_cloze: which words follow a quoted passage of the document (reading real text, the answer only there).
  base.instruction = "Read the following text carefully. I will ask you about a passage in it afterwards.";
  // Sized with a stand-in question of the usual length (the real one quotes the document).
  base.question = "In the text above, which words come right after \"And the earth was without form and\"?";
  base.answer_prefix = "The words that come right after \"And the earth was without form and\" are \"";
  task_item it = with_haystack(base, {});
  // The sentence at `depth` (or the next one of 10+ words) whose opening 6 words occur once in the document.
  auto words_of = [](std::string_view s) {
    std::vector<std::string> w;
    std::string cur;
    for (char c : s) {
      if (c == ' ') {
        if (!cur.empty()) w.push_back(cur);
        cur.clear();
      } else
        cur += c;
    }
    if (!cur.empty()) w.push_back(cur);
    return w;
  };
  const std::string& doc = it.context;
  std::vector<std::size_t> starts{0}; // sentence starts in doc: after ". " etc.
  for (std::size_t i = 0; i + 1 < doc.size(); ++i)
    if ((doc[i] == '.' || doc[i] == '!' || doc[i] == '?') && doc[i + 1] == ' ') starts.push_back(i + 2);
  const std::size_t first =
      std::min(starts.size() - 1, static_cast<std::size_t>(std::lround(o.depth * double(starts.size() - 1))));
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const std::size_t si = (first + k) % starts.size();
    const std::size_t end = si + 1 < starts.size() ? starts[si + 1] : doc.size();
    const auto w = words_of(std::string_view(doc).substr(starts[si], end - starts[si]));
    if (w.size() < 10) continue;
    std::string cue;
    for (int j = 0; j < 6; ++j) cue += (j ? " " : "") + w[std::size_t(j)];
    if (doc.find(cue) != doc.rfind(cue)) continue;
    std::string answer = w[6] + " " + w[7];
    it.question = "In the text above, which words come right after \"" + cue + "\"?";
    it.answer_prefix = "The words that come right after \"" + cue + "\" are \"";
    it.outputs = {answer};
    it.max_new = 16;
    it.depth = double(si) / double(std::max<std::size_t>(1, starts.size() - 1));
    return it;
  }
  throw std::invalid_argument("haystack: no sentence of 10 or more words with a unique opening for qa_cloze");
}

generator_options item_options(int length, std::uint32_t set_seed, int index, int items, double depth) {
  generator_options o;
  o.length = length;
  o.depth = depth >= 0 ? depth : (items == 1 ? 0.5 : double(index) / double(items - 1));
  std::seed_seq sq{set_seed, std::uint32_t(index)};
  sq.generate(&o.seed, &o.seed + 1);
  return o;
}

item_tokens tokenize_item(const llama::tokenizer& tok, const task_item& item, std::string_view system) {
  const std::string user_head = item.instruction + "\n\n";
  const std::string full =
      llama::chat_ml(user_head + item.context + "\n\n" + item.question, system) + item.answer_prefix;
  const auto at = full.find(user_head);
  const std::size_t split = at + user_head.size() + item.context.size();
  item_tokens t;
  t.ids = tok.encode(std::string_view(full).substr(0, split), true);
  t.n_context = static_cast<int>(t.ids.size());
  const auto rest = tok.encode(std::string_view(full).substr(split), true);
  t.ids.insert(t.ids.end(), rest.begin(), rest.end());
  return t;
}

std::string normalize_answer(std::string_view s) {
  std::string o;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u))
      o += static_cast<char>(std::tolower(u));
    else if (!o.empty() && o.back() != ' ')
      o += ' ';
  }
  while (!o.empty() && o.back() == ' ') o.pop_back();
  return o;
}

double score_answer(std::string_view answer, const std::vector<std::string>& outputs) {
  if (outputs.empty()) return 0.0;
  const std::string a = " " + normalize_answer(answer) + " ";
  int found = 0;
  for (const auto& out : outputs) found += a.find(" " + normalize_answer(out) + " ") != std::string::npos;
  return double(found) / double(outputs.size());
}

interval wilson_interval(std::int64_t k, std::int64_t n, double z) {
  if (n <= 0) return {0.0, 1.0};
  const double p = double(k) / double(n), z2 = z * z, nn = double(n);
  const double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
  const double half = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

} // namespace skv::eval
