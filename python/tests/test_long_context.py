"""tools/eval/long_context.py (the generated tasks on Gemma 3 through transformers): its tokenizer built from the GGUF,
and its shared forward pass — caches filled from one recorded forward pass decode exactly as caches prefilled by their
own forward pass over the same tokens."""
import pathlib
import sys

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from common import TEXT, gemma3_gguf  # noqa: E402
from skv.transformers import SkvCache  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "eval"))
import long_context as lc  # noqa: E402


@pytest.fixture(scope="module")
def gemma3():
    path, model = gemma3_gguf()
    return model, lc.SpmTokenizer(path)


def test_the_gguf_tokenizer_keeps_words_whole(gemma3):
    _, tok = gemma3
    text = "And the land of Temani reigned in his stead. The special magic number is: 6913033.\n\nWhat is it?"
    ids = tok.encode(text, bos=True)
    pieces = [tok.sp.id_to_piece(i) for i in ids]
    assert ids[0] == tok.bos and tok.decode(ids[1:]) == text
    for word in ("▁the", "▁land", "▁special", "▁magic", "▁number", "\n\n"):
        assert word in pieces, pieces
    assert [p for p in pieces if p.isdigit()] == list("6913033")  # Gemma splits digits
    assert 0 < len(ids) < 40, pieces
    assert tok.vocab[tok.sp.piece_to_id("▁the")] == " the" and "\n" in tok.vocab


@torch.inference_mode()
@pytest.mark.parametrize("preset,budget", [("full_kv", None), ("sentence_kv_lossless", 96)])
def test_a_cache_filled_from_the_record_decodes_as_its_own_prefill(gemma3, preset, budget):
    import skv
    model, tok = gemma3
    prompt = 3 * (TEXT + "\n\n") + "Question: How tall is the Eiffel Tower?\n\nAnswer: It is"
    ids = torch.tensor([tok.encode(prompt, bos=True)])
    n = ids.shape[1]
    m = n - 14  # the question_after split: prefill ids[:m], then 14 tokens through the decode path
    assert n > 512 + 14  # the sliding layers' 512-token window is full before the split
    record = lc.Record(model)
    record.run(model, ids)
    boundaries = skv.sentence_boundaries(tok.vocab) if "sentence" in preset else None

    def run(fill):
        cache = SkvCache(model, preset=preset, budget=budget, boundaries=boundaries)
        fill(cache)
        logits, sel = [], []
        for pos in range(m, n):
            p = torch.tensor([pos])
            out = model(input_ids=ids[:, pos:pos + 1], past_key_values=cache, use_cache=True, cache_position=p,
                        position_ids=p[None])
            logits.append(out.logits[0, -1])
            sel.append([tuple(x.tolist() for x in cache.selection(layer)) for layer in cache.global_layers])
        return torch.stack(logits), sel

    filled, filled_sel = run(lambda c: lc.fill(c, record, ids, m))
    own, own_sel = run(lambda c: model(input_ids=ids[:, :m], past_key_values=c, use_cache=True))
    # the prompt's K/V/Q are the same numbers either way (causal attention: positions < m do not see the rest), so
    # every step attends the same selection over the same K/V; the last digits differ only where SDPA's kernel
    # orders its sums differently for calls of m and n tokens
    assert filled_sel == own_sel
    worst = (filled - own).abs().max().item()
    print(f"{preset}: {n - m} decode steps after a {m}-token prefill, filled vs own prefill: max |Δlogit| {worst:.1e}")
    assert worst < 1e-3 * own.abs().max().item()
