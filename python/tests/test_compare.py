"""tools/compare/kvpress_vs_skv.py shares one exact prefill per prompt among all methods. These tests check that the
sharing changes nothing: each kvpress press, replayed on the recorded prefill, keeps bit-identical K/V to the same
press applied during a prefill (`with press(model):`), and each skv preset fed through the fan-out selects exactly
what a cache of its own selects."""
import pathlib
import sys

import pytest
import torch

pytest.importorskip("transformers")
kvpress = pytest.importorskip("kvpress")
from transformers import DynamicCache  # noqa: E402

from skv.transformers import SkvCache  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "compare"))
import kvpress_vs_skv as compare  # noqa: E402

from common import TEXT, chat_inputs  # noqa: E402

PRESSES = {
    "SnapKV defaults": lambda r: kvpress.SnapKVPress(compression_ratio=r),
    "SnapKV w32 k7": lambda r: kvpress.SnapKVPress(compression_ratio=r, window_size=32, kernel_size=7),
    "StreamingLLM": lambda r: kvpress.StreamingLLMPress(compression_ratio=r),
    "ExpectedAttention": lambda r: kvpress.ExpectedAttentionPress(compression_ratio=r),
    "KeyDiff": lambda r: kvpress.KeyDiffPress(compression_ratio=r),
}


@pytest.fixture(scope="module")
def prompt(smollm2):
    model, tok = smollm2
    return chat_inputs(tok, "When was the tower built?", TEXT * 3)["input_ids"]


@torch.inference_mode()
@pytest.mark.parametrize("press", list(PRESSES))
def test_replayed_press_keeps_what_the_press_keeps_in_a_prefill(smollm2, prompt, press):
    model, _ = smollm2
    n = prompt.shape[1]
    ratio = 1 - 128 / n
    direct = DynamicCache()
    with PRESSES[press](ratio)(model):
        model(input_ids=prompt, past_key_values=direct, use_cache=True)
    shared = compare.SharedPrefill(model, [])
    shared.run(model, prompt)
    replayed = shared.compressed(model, PRESSES[press](ratio))
    for a, b in zip(direct.layers, replayed.layers):
        assert a.keys.shape == b.keys.shape and a.keys.shape[2] < n
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


@torch.inference_mode()
def test_fanned_out_skv_caches_select_what_their_own_prefill_selects(smollm2, prompt):
    model, tok = smollm2
    presets = ["sentence_kv", "snap_kv"]
    fanned = [SkvCache(model, preset=p, budget=96, tokenizer=tok) for p in presets]
    shared = compare.SharedPrefill(model, fanned)
    first = int(shared.run(model, prompt).argmax())
    for preset, cache in zip(presets, fanned):
        own = SkvCache(model, preset=preset, budget=96, tokenizer=tok)
        assert int(model(input_ids=prompt, past_key_values=own, use_cache=True).logits[0, -1].argmax()) == first
        pos = torch.tensor([prompt.shape[1]])
        for c in (cache, own):
            model(input_ids=torch.tensor([[first]]), past_key_values=c, use_cache=True, cache_position=pos,
                  position_ids=pos[None])
        for layer in own.global_layers:
            assert [x.tolist() for x in cache.selection(layer)] == [x.tolist() for x in own.selection(layer)]
