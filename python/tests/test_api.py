"""The low-level API over torch tensors: every preset, against a dense PyTorch reference; views; bad input."""
import math

import pytest
import torch

import skv

QH, KH, D = 8, 2, 64


def make_prompt(n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(n, KH, D, generator=g).to(dtype)
    v = torch.randn(n, KH, D, generator=g).to(dtype)
    q = torch.randn(n, QH, D, generator=g).to(dtype)
    ids = torch.randint(2, 50, (n,), generator=g)
    ids[::7] = 1  # sentence boundaries
    return k, v, q, ids


def reference(keys, values, q, positions_per_pair, scale):
    """Dense attention of q [batch, QH, D] over the positions each (sequence, KV head) pair selected (float64)."""
    b = q.shape[0]
    out = torch.empty(b, QH, D, dtype=torch.float64)
    g = QH // KH
    for s in range(b):
        for h in range(KH):
            pos = positions_per_pair[s * KH + h]
            k = keys[s][pos, h].double()
            v = values[s][pos, h].double()
            for j in range(g):
                logits = (k @ q[s, h * g + j].double()) * scale
                out[s, h * g + j] = torch.softmax(logits, 0) @ v
    return out


def pairs_of(cache, layer):
    indptr, indices = cache.selection(layer)
    return [indices[indptr[p]:indptr[p + 1]].long() for p in range(len(indptr) - 1)]


@pytest.mark.parametrize("preset", skv.presets())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_every_preset_attends_what_it_selects(preset, dtype):
    k, v, q, ids = make_prompt(300, seed=1, dtype=dtype)
    cache = skv.Cache(preset, num_layers=2, num_q_heads=QH, num_kv_heads=KH, head_dim=D, dtype=dtype, budget=96,
                      boundaries=[1])
    for layer in range(2):
        cache.prefill(layer, k, v, q, ids)
    keys, values = [k.float()], [v.float()]
    g = torch.Generator().manual_seed(2)
    for step in range(6):
        k1, v1, q1 = (torch.randn(1, n, D, generator=g).to(dtype) for n in (KH, KH, QH))
        tok = [1 if step % 3 == 2 else 7]
        keys[0] = torch.cat([keys[0], k1.float()])
        values[0] = torch.cat([values[0], v1.float()])
        for layer in range(2):
            out = cache.step(layer, k1, v1, q1, tok)
            assert out.shape == (1, QH, D) and out.dtype == dtype
            pos = pairs_of(cache, layer)
            assert all(len(p) > 0 and p[-1].item() == 300 + step for p in pos)  # the new token is always attended
            want = reference(keys, values, q1.float(), pos, cache.softmax_scale)
            # the reference sees the same rounded K/V/Q; the output is rounded to the storage type (relative
            # 2^-11 for half, 2^-8 for bf16) and the kernels sum in float32 in another order
            tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
            err = (out.double() - want).norm() / want.norm()
            assert err < tol, (preset, step, layer, err.item())
    led = cache.ledger()
    assert set(led) == {"fast_bytes", "slow_bytes", "moved_to_fast", "moved_to_slow"} and led["fast_bytes"] > 0


def test_full_kv_equals_sdpa_and_views_are_zero_copy():
    k, v, q, ids = make_prompt(200, seed=3)
    hnd_k = k.transpose(0, 1).contiguous().transpose(0, 1)  # an HND buffer seen as [tokens, heads, dim]
    hnd_v = v.transpose(0, 1).contiguous().transpose(0, 1)
    assert hnd_k.stride() == (D, 200 * D, 1)
    cache = skv.Cache("full_kv", 1, QH, KH, D)
    cache.prefill(0, hnd_k, hnd_v, None, ids)
    k1, v1, q1 = torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D)
    out = torch.full((1, QH, D), float("nan"))
    res = cache.step(0, k1, v1, q1, [5], out=out)
    assert res.data_ptr() == out.data_ptr()  # written in place
    kk = torch.cat([k, k1]).transpose(0, 1).repeat_interleave(QH // KH, 0)  # [QH, n, D]
    vv = torch.cat([v, v1]).transpose(0, 1).repeat_interleave(QH // KH, 0)
    want = torch.nn.functional.scaled_dot_product_attention(q1.transpose(0, 1), kk, vv)[:, 0]
    assert torch.allclose(out[0], want, atol=1e-5, rtol=1e-4)
    indptr, indices = cache.selection(0)
    assert indptr.dtype == torch.int32 and indices.dtype == torch.int32 and indptr.tolist() == [0, 201, 402]


def test_decode_inputs_in_every_form_give_the_same_step():
    """The decode path's fast hand-over (DLPack capsules, int32 ids passed through) against the other forms a caller
    may pass: tensors that require grad, strided views, token ids as a list or an int64 tensor."""
    k, v, q, ids = make_prompt(300, seed=5)
    k1, v1, q1 = torch.randn(2, KH, D), torch.randn(2, KH, D), torch.randn(2, QH, D)
    outs = []
    for form in range(3):
        cache = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=96, boundaries=[1])
        cache.prefill(0, k, v, q, ids, [0, 150, 300])
        if form == 0:  # the usual: contiguous tensors, int32 ids
            out = cache.step(0, k1, v1, q1, torch.tensor([3, 1], dtype=torch.int32))
        elif form == 1:  # autograd leaves and a list of ids
            out = cache.step(0, k1.clone().requires_grad_(), v1.clone().requires_grad_(), q1.clone().requires_grad_(),
                             [3, 1])
        else:  # K/V as views into larger buffers (strided rows), int64 ids
            kb = torch.zeros(2, 2 * KH, D)
            vb = torch.zeros(2, 2 * KH, D)
            kb[:, ::2], vb[:, ::2] = k1, v1
            out = cache.step(0, kb[:, ::2], vb[:, ::2], q1, torch.tensor([3, 1]))
        outs.append(out)
        assert cache.length(0, 0) == 151 and cache.length(0, 1) == 151
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_ragged_batch_and_hnd_output():
    k, v, q, ids = make_prompt(150, seed=4)
    cache = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=96, boundaries=[1])
    cache.prefill(0, k, v, q, ids, indptr=[0, 100, 150])
    assert cache.length(0, 0) == 100 and cache.length(0, 1) == 50
    out = torch.empty(QH, 2, D).transpose(0, 1)  # [batch, heads, dim] with head-major strides
    cache.step(0, torch.randn(2, KH, D), torch.randn(2, KH, D), torch.randn(2, QH, D), [3, 4], out=out)
    assert torch.isfinite(out).all()


def test_sentence_boundaries_from_a_vocabulary():
    assert skv.sentence_boundaries([".", "Hello", ' world."', "\n\n", "e.g", "?)"]) == [0, 2, 3, 5]
    assert skv.ends_sentence("!\n") and not skv.ends_sentence("U.S")


def bad_input_cache():
    k, v, q, ids = make_prompt(120, seed=5)
    cache = skv.Cache("streaming_llm", 2, QH, KH, D, budget=40)
    cache.prefill(0, k, v, q, ids)
    return cache, (k, v)


def assert_still_answers(cache, k, v):
    """After any rejected call the cache holds what it held and a good step attends correctly."""
    n = cache.length(0, 0)
    k1, v1, q1 = torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D)
    out = cache.step(0, k1, v1, q1, [2])
    assert cache.length(0, 0) == n + 1
    keys, values = torch.cat([k, k1]), torch.cat([v, v1])
    want = reference([keys], [values], q1, pairs_of(cache, 0), cache.softmax_scale)
    assert ((out.double() - want).norm() / want.norm()) < 1e-5


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda c: c.step(0, torch.randn(1, KH, D, dtype=torch.float64), torch.randn(1, KH, D),
                          torch.randn(1, QH, D), [2]), TypeError, "argument 'k' has the wrong dtype"),
        (lambda c: c.step(0, torch.randn(KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2]),
         ValueError, "argument 'k' has rank 2"),
        (lambda c: c.step(0, torch.randn(1, KH, D), torch.randn(1, KH + 1, D), torch.randn(1, QH, D), [2]),
         ValueError, "argument 'v.heads' is 3; allowed: 2"),
        (lambda c: c.step(0, torch.randn(1, KH, 2 * D)[:, :, ::2], torch.randn(1, KH, D), torch.randn(1, QH, D), [2]),
         ValueError, "along head_dim"),
        (lambda c: c.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2, 3]),
         ValueError, "argument 'token_ids.size()' is 2; allowed: 1"),
        (lambda c: c.step(2, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2]),
         ValueError, "argument 'layer' is 2; allowed: [0, 2)"),
        (lambda c: c.step(1, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2]),
         ValueError, "holds no prompt: call prefill() for it first"),
        (lambda c: c.step(0, torch.randn(1, KH, D, device="meta"), torch.randn(1, KH, D), torch.randn(1, QH, D),
                          [2]), ValueError, "a tensor is on meta; allowed: cpu"),
        (lambda c: c.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2.5]),
         TypeError, "argument 'token_ids' has dtype torch.float"),
        (lambda c: c.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [2],
                          out=torch.empty(1, QH, D, dtype=torch.float16)), TypeError, "argument 'out' has the wrong dtype"),
        (lambda c: c.prefill(0, torch.randn(10, KH, D), torch.randn(9, KH, D), None, list(range(10))),
         ValueError, "argument 'v.tokens' is 9; allowed: 10"),
        (lambda c: c.prefill(0, torch.randn(10, KH, D), torch.randn(10, KH, D), None, list(range(10)),
                             indptr=[0, 4, 3]), ValueError, "an empty prompt cannot be prefilled"),
    ],
)
def test_bad_input_raises_and_leaves_the_cache_intact(call, error, text):
    cache, (k, v) = bad_input_cache()
    with pytest.raises(error) as e:
        call(cache)
    assert text in str(e.value)
    assert_still_answers(cache, k, v)


def test_bad_construction():
    with pytest.raises(ValueError, match="argument 'preset' is 'nope'"):
        skv.Cache("nope", 1, QH, KH, D)
    with pytest.raises(ValueError, match="has no option 'sink'.*it has: "):
        skv.Cache("full_kv", 1, QH, KH, D, sink=3)
    with pytest.raises(ValueError, match="argument 'head_dim' is 72"):
        skv.Cache("full_kv", 1, QH, KH, 72)
    with pytest.raises(ValueError, match="argument 'boundaries' is empty"):
        skv.Cache("sentence_kv", 1, QH, KH, D)
    with pytest.raises(TypeError, match="argument 'dtype'"):
        skv.Cache("full_kv", 1, QH, KH, D, dtype=torch.int8)
    with pytest.raises(TypeError, match="option 'fallback' must be"):
        skv.Cache("sentence_kv", 1, QH, KH, D, boundaries=[1], fallback="no")
    with pytest.raises(ValueError, match="option 'unit' is 'page'; allowed: 'token' or 'segment'"):
        skv.Cache("snap_kv", 1, QH, KH, D, unit="page")
    with pytest.raises(ValueError, match="option 'query' is 'last'; allowed: 'partial_mean', 'current' or 'blend'"):
        skv.Cache("sentence_kv", 1, QH, KH, D, boundaries=[1], query="last")


def test_options_by_name_reach_the_preset():
    k, v, q, ids = make_prompt(400, seed=6)
    cache = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=64, boundaries=[1], sink=0, recent=4,
                      fallback=False)
    cache.prefill(0, k, v, q, ids)
    cache.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [5])
    indptr, indices = cache.selection(0)
    assert indptr[1] - indptr[0] <= 64  # no fallback: a budgeted selection on the first step
    assert 0 not in indices[: indptr[1]].tolist() or indices[0] == 0  # sink 0: position 0 only if ranked in
    assert math.isclose(cache.softmax_scale, D ** -0.5, rel_tol=1e-6)
    # segment_topk's whole_segments / blend reach the preset: no sentence is cut, so the selection is whole sentences
    whole = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=64, boundaries=[1], sink=0, recent=4,
                      fallback=False, whole_segments=True, query="blend")
    whole.prefill(0, k, v, q, ids)
    whole.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [5])
    w_indptr, w_indices = whole.selection(0)
    # sentences of 7 tokens (ids[::7] = 1 closes one at every 7th position); the last 4 + the step's own are recent
    n = k.shape[0] + 1
    for h in range(KH):
        sel = set(w_indices[w_indptr[h]:w_indptr[h + 1]].tolist())
        assert 0 < len(sel) <= 64
        for p in sel:
            if p >= n - 4:
                continue
            # position 0 is a boundary: sentence [0]; then [1, 7], [8, 14], ... (a boundary ends its sentence)
            first = 0 if p == 0 else ((p - 1) // 7) * 7 + 1
            members = [0] if p == 0 else range(first, min(first + 7, n - 4))
            assert all(m in sel for m in members), (h, p)


def test_heavy_tokens_reach_the_preset():
    # keys at 3 positions point along the prompt's last queries: with heavy=4 they stay selected, inside the budget
    k, v, q, ids = make_prompt(600, seed=9)
    G = QH // KH
    planted = [101, 250, 377]
    for h in range(KH):
        d = q[-32:, h * G:(h + 1) * G].sum(dim=(0, 1))
        for t in planted:
            k[t, h] = 12 * d / d.norm()
    cache = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=64, boundaries=[1], sink=4, recent=4,
                      fallback=False, heavy=4, heavy_window=32)
    cache.prefill(0, k, v, q, ids)
    for _ in range(5):
        cache.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [5])
        indptr, indices = cache.selection(0)
        for h in range(KH):
            sel = indices[indptr[h]:indptr[h + 1]].tolist()
            assert len(sel) <= 64 and sel == sorted(set(sel))
            assert all(t in sel for t in planted), (h, sel)
    with pytest.raises(ValueError, match="argument 'heavy' is -2; allowed: >= 0"):
        skv.Cache("sentence_kv_lossless", 1, QH, KH, D, boundaries=[1], heavy=-2)
    with pytest.raises(ValueError, match="preset 'full_kv' has no option 'heavy'"):
        skv.Cache("full_kv", 1, QH, KH, D, heavy=4)
    with pytest.raises(ValueError, match="argument 'current_layers' is -1; allowed: >= 0"):
        skv.Cache("sentence_kv_lossless", 1, QH, KH, D, boundaries=[1], current_layers=-1)


def test_warmup_reads_everything_for_the_first_steps():
    # the first `warmup` steps after the prefill select every token (a question read exactly), then the budget holds
    k, v, q, ids = make_prompt(600, seed=4)
    cache = skv.Cache("sentence_kv_lossless", 1, QH, KH, D, budget=64, boundaries=[1], sink=4, recent=4,
                      fallback=False, warmup=3)
    cache.prefill(0, k, v, q, ids)
    for step in range(1, 6):
        cache.step(0, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [5])
        indptr, _ = cache.selection(0)
        for h in range(KH):
            n = int(indptr[h + 1] - indptr[h])
            assert (n == 600 + step) if step <= 3 else (n <= 64), (step, h, n)
    with pytest.raises(ValueError, match="argument 'warmup' is -1; allowed: >= 0"):
        skv.Cache("sentence_kv_lossless", 1, QH, KH, D, boundaries=[1], warmup=-1)


def test_guided_layers_take_the_guide_layers_sentences():
    # guided_layers / guide_layer: layers 0-1 rank sentences by layer 2's estimated attention shares, so once layer 2
    # has ranked (step 1), both guided layers and all their KV heads take the same positions (same sentences, whole
    # prompt retained) although each layer holds different keys; unguided (guided_layers=0), they differ
    def run(**guide):
        cache = skv.Cache("sentence_kv_lossless", 4, QH, KH, D, budget=64, boundaries=[1], sink=4, recent=4,
                          fallback=False, **guide)
        for layer in range(4):
            k, v, q, ids = make_prompt(600, seed=20 + layer)  # same token ids, different keys per layer
            cache.prefill(layer, k, v, q, ids)
        g = torch.Generator().manual_seed(3)
        for _ in range(2):
            k1, v1, q1 = (torch.randn(1, h, D, generator=g) for h in (KH, KH, QH))
            for layer in range(4):
                cache.step(layer, k1, v1, q1, [5])
        picks = []
        for layer in range(2):
            indptr, indices = cache.selection(layer)
            picks += [indices[int(indptr[h]):int(indptr[h + 1])].tolist() for h in range(KH)]
        return picks

    guided = run(guided_layers=2, guide_layer=2)
    assert all(p == guided[0] for p in guided)
    assert run() == guided  # the preset's default (-1, -1): half of 4 layers, guided by layer 2 * 4 // 3 = 2
    assert len(set(map(tuple, run(guided_layers=0)))) > 1
    with pytest.raises(ValueError, match="argument 'guide_layer' is 4; allowed: -1"):
        skv.Cache("sentence_kv_lossless", 4, QH, KH, D, boundaries=[1], guided_layers=2, guide_layer=4)


def test_decode_pyramid_gives_early_layers_more_of_the_budget():
    # decode_pyramid_beta: layer budgets fall with depth (PyramidKV's schedule over sink + recent), mean `budget`
    k, v, q, ids = make_prompt(600, seed=6)
    cache = skv.Cache("sentence_kv_lossless", 4, QH, KH, D, budget=64, boundaries=[1], sink=4, recent=4,
                      fallback=False, decode_pyramid_beta=2)
    sizes = []
    for layer in range(4):
        cache.prefill(layer, k, v, q, ids)
    for layer in range(4):
        cache.step(layer, torch.randn(1, KH, D), torch.randn(1, KH, D), torch.randn(1, QH, D), [5])
        indptr, _ = cache.selection(layer)
        sizes.append({int(indptr[h + 1] - indptr[h]) for h in range(KH)})
    assert sizes == [{92}, {74}, {56}, {38}]  # 8 always selected + (84, 66, 48, 30): 2 x 56 - 56 / 2, by 56 // 3
    with pytest.raises(ValueError, match="argument 'pyramid_beta' is -1; allowed: >= 0"):
        skv.Cache("sentence_kv_lossless", 4, QH, KH, D, boundaries=[1], decode_pyramid_beta=-1)
