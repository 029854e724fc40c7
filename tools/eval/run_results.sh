#!/usr/bin/env bash
# Regenerates the measurements behind docs/results.md: every preset at two budgets on
#   - prefix-prefill perplexity + attention recall on Genesis (KJV, Debian's bible-kjv): --task recall, which runs
#     the ppl protocol (prefill P tokens with full attention, then feed M tokens one by one through the policy)
#     and also reports the recall of the selected sets;
#   - RULER niah_single_1 and niah_single_2 (first LIMIT items each).
# Then prints the Markdown table. Each run prefills once per prompt and decodes every policy from that prefill
# (see docs/results.md).
#
# Usage: tools/eval/run_results.sh [OUT_DIR]        (default: build/results)
# Environment: SKV_EVAL (binary, default build/bin/skv-eval), SKV_MODEL (GGUF), BUDGETS (default 128,256),
#   LIMIT (niah items per file, default 20), PREFILL (3000), DECODE (500), DATA (RULER folder,
#   default /work/shared/data/ruler-4k), PARALLEL=1 to run the three jobs at once (2+ cores; timings then mean
#   little), TABLE_ONLY=1 to only print the table from OUT_DIR's existing results.
# Needs: bible-kjv (apt-get install bible-kjv), python3 (table only).
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=${1:-build/results}
BIN=${SKV_EVAL:-build/bin/skv-eval}
BUDGETS=${BUDGETS:-128,256}
LIMIT=${LIMIT:-20}
PREFILL=${PREFILL:-3000}
DECODE=${DECODE:-500}
DATA=${DATA:-/work/shared/data/ruler-4k}
POLICIES=full_kv,streaming_llm,sentence_kv,sentence_kv_lossless,sentence_kv_paper,snap_kv,pyramid_kv,h2o,chunk_kv,quest
mkdir -p "$OUT"

if [[ "${TABLE_ONLY:-0}" != 1 ]]; then
    [[ -x "$BIN" ]] || { echo "error: $BIN not built (cmake --build build --target skv-eval)" >&2; exit 1; }
    command -v bible >/dev/null || { echo "error: 'bible' not found: apt-get install bible-kjv" >&2; exit 1; }
    # Genesis without the verse references ("Ge1:1 ").
    bible -f Gen1:1-50:26 | sed -E 's/^Ge[0-9]+:[0-9]+ //' > "$OUT/genesis.txt"
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
        echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ local changes)')"
    } > "$OUT/env.txt"

    run() { # name, args...
        local name=$1; shift
        echo "+ $BIN $*" > "$OUT/$name.cmd"
        "$BIN" "$@" --json > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
    }
    jobs=(
        "recall --policy $POLICIES --budget $BUDGETS --task recall --input $OUT/genesis.txt --prefill $PREFILL --decode $DECODE"
        "niah_single_1 --policy $POLICIES --budget $BUDGETS --task niah --input $DATA/niah_single_1.jsonl --limit $LIMIT"
        "niah_single_2 --policy $POLICIES --budget $BUDGETS --task niah --input $DATA/niah_single_2.jsonl --limit $LIMIT"
    )
    # Parallel jobs: one OpenBLAS thread each, or their spinning threads would fight over the cores.
    if [[ "${PARALLEL:-0}" == 1 ]]; then export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}; fi
    for j in "${jobs[@]}"; do
        # shellcheck disable=SC2086
        if [[ "${PARALLEL:-0}" == 1 ]]; then run $j & else run $j; fi
    done
    wait
fi

python3 - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
def summaries(name):
    p = os.path.join(out, name + ".jsonl")
    if not os.path.exists(p): return {}
    rows = [json.loads(l) for l in open(p) if l.strip()]
    return {(r["policy"], r["budget"]): r for r in rows if r.get("summary")}
rec, n1, n2 = summaries("recall"), summaries("niah_single_1"), summaries("niah_single_2")
keys = list(dict.fromkeys(list(rec) + list(n1) + list(n2)))
def f(d, k, field, fmt):
    r = d.get(k)
    return fmt.format(r[field]) if r and field in r else "–"
def acc(d, k):
    r = d.get(k)
    return f"{r['accuracy']:.2f} ({r['correct']}/{r['items']})" if r else "–"
print("| policy | budget | ppl ↓ | recall | niah_single_1 | niah_single_2 | fast / slow tier MiB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k in keys:
    b = "all" if k[1] is None else str(k[1])
    r = rec.get(k)
    mem = f"{r['fast_mib']:.1f} / {r['slow_mib']:.1f}" if r else "–"
    print(f"| {k[0]} | {b} | {f(rec, k, 'ppl', '{:.2f}')} | {f(rec, k, 'recall', '{:.3f}')} | {acc(n1, k)} | {acc(n2, k)} | {mem} |")
EOF
