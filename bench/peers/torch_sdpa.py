#!/usr/bin/env python3
"""Peer timings for skv-bench: PyTorch on the same CPU, the same decode shapes, the same thread count.

  torch_sdpa_dense          scaled_dot_product_attention of one decode query over the whole context (GQA)
  torch_sdpa_sparse         the same over `budget` gathered tokens per KV head (what a sparse policy attends to)
  torch_sentencekv_select   SentenceKV's selection rule as the official code writes it, plainly in PyTorch: mean
                            query of the open sentence, bmm against the sentence (semantic) vectors, sort, take
                            sentences in rank order under the budget (+ sink / recent), gather the token indices
  torch_sentencekv_step     select + gather K/V of the chosen tokens + SDPA: one steady decode step

Usage: python3 bench/peers/torch_sdpa.py [--quick] [--threads N] [--out FILE.json]
Names follow skv-bench: <stage>/<peer>/ctx:<N>/budget:<B>/shape:<name>/kv:<type>; times are medians.
"""
import argparse
import json
import os
import platform
import time

import torch
import torch.nn.functional as F

from peer_common import timeit

SHAPES = {"llama3_8b": (32, 8, 128), "smollm2": (9, 3, 64)}
SINK, RECENT, MEAN_SENTENCE = 32, 32, 24




def sentence_table(n, gen):
    """Sentence starts and lengths covering [0, n), lengths uniform in [12, 36] like examples/synthetic.hpp."""
    lengths = torch.randint(MEAN_SENTENCE // 2, MEAN_SENTENCE * 3 // 2 + 1, (n // 12 + 1,), generator=gen)
    ends = torch.cumsum(lengths, 0)
    count = int(torch.searchsorted(ends, torch.tensor(n)).item()) + 1
    ends = ends[:count].clamp(max=n)
    starts = torch.cat([torch.zeros(1, dtype=ends.dtype), ends[:-1]])
    return starts, ends - starts


def sentencekv_select(q_partial, n_partial, vectors, starts, lengths, n, budget, group):
    """Token indices [kv_heads, <= budget] chosen by SentenceKV for one decode step (the official rule, per KV head
    with the group's queries summed: skv's per-KV-head variant)."""
    kv_heads, dim = vectors.shape[0], vectors.shape[2]
    q_mean = (q_partial / n_partial).view(kv_heads, group, dim)                 # mean query of the open sentence
    scores = torch.bmm(q_mean, vectors.transpose(1, 2)).sum(1)                  # [kv_heads, sentences]
    order = torch.argsort(scores, dim=1, descending=True)                       # sort
    take = lengths[order].cumsum(1)                                             # tokens taken in rank order
    inner = budget - SINK - RECENT
    keep = take - lengths[order] < inner                                        # sentences that start under budget
    picked = []
    for h in range(kv_heads):
        sel = order[h][keep[h]]
        idx = torch.cat([torch.arange(s, s + l) for s, l in zip(starts[sel].tolist(), lengths[sel].tolist())])[:inner]
        idx = torch.cat([torch.arange(SINK), idx, torch.arange(n - RECENT, n)])  # gather indices
        picked.append(torch.sort(idx).values)
    return torch.stack(picked)


def run(args):
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(2025)
    contexts = [2048] if args.quick else [4096, 16384, 32768, 65536, 131072]
    budgets = [1024] if args.quick else [512, 1024]
    shapes = ["smollm2"] if args.quick else ["llama3_8b", "smollm2"]
    dtypes = {"bfloat16": torch.bfloat16, "float": torch.float32}
    results = []

    def record(name, median, mean, reps, **extra):
        results.append({"name": name, "median_us": median * 1e6, "mean_us": mean * 1e6, "reps": reps, **extra})
        print(f"{name:90s} {median * 1e6:12.1f} us", flush=True)

    for shape in shapes:
        qh, kh, d = SHAPES[shape]
        g = qh // kh
        for n in contexts:
            for tname, dt in dtypes.items():
                if tname == "float" and (shape != "llama3_8b" or n < 65536):
                    continue
                k = torch.randn(1, kh, n, d, generator=gen).to(dt)
                v = torch.randn(1, kh, n, d, generator=gen).to(dt)
                q = torch.randn(1, qh, 1, d, generator=gen).to(dt)
                tail = f"ctx:{n}/budget:all/shape:{shape}/kv:{tname}"
                fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                record(f"torch_sdpa_dense/torch/{tail}", *timeit(fn), ctx=n, shape=shape, kv=tname)
                if tname != "bfloat16":
                    continue
                starts, lengths = sentence_table(n, gen)
                # semantic vectors: mean key per sentence and KV head (computed at prefill; not timed)
                seg = torch.repeat_interleave(torch.arange(len(starts)), lengths)
                vec = torch.zeros(kh, len(starts), d).index_add_(1, seg, k[0].float()) / lengths.view(1, -1, 1)
                vec = vec.to(dt).float()
                q_partial = torch.randn(qh, d, generator=gen) * 3
                for b in budgets:
                    btail = f"ctx:{n}/budget:{b}/shape:{shape}/kv:{tname}"
                    idx = sentencekv_select(q_partial, 3, vec, starts, lengths, n, b, g)
                    ks = torch.gather(k, 2, idx[None, :, :, None].expand(1, kh, idx.shape[1], d))
                    vs = torch.gather(v, 2, idx[None, :, :, None].expand(1, kh, idx.shape[1], d))
                    fn = lambda: F.scaled_dot_product_attention(q, ks, vs, enable_gqa=True)
                    record(f"torch_sdpa_sparse/torch/{btail}", *timeit(fn), ctx=n, shape=shape, kv=tname, budget=b)
                    fn = lambda: sentencekv_select(q_partial, 3, vec, starts, lengths, n, b, g)
                    record(f"torch_sentencekv_select/torch/{btail}", *timeit(fn), ctx=n, shape=shape, kv=tname,
                           budget=b)

                    def step():
                        i = sentencekv_select(q_partial, 3, vec, starts, lengths, n, b, g)
                        e = i[None, :, :, None].expand(1, kh, i.shape[1], d)
                        return F.scaled_dot_product_attention(q, torch.gather(k, 2, e), torch.gather(v, 2, e),
                                                              enable_gqa=True)

                    record(f"torch_sentencekv_step/torch/{btail}", *timeit(step), ctx=n, shape=shape, kv=tname,
                           budget=b)
                del k, v
    return {
        "context": {"torch": torch.__version__, "threads": args.threads, "cpu_capability":
                    torch.backends.cpu.get_cpu_capability(), "machine": platform.machine(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_avg": os.getloadavg()},
        "benchmarks": results,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="bench/results/torch_sdpa.json")
    a = ap.parse_args()
    out = run(a)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
