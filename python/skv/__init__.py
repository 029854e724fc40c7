"""skv: composable KV-cache policies (SentenceKV, SnapKV, PyramidKV, H2O, StreamingLLM, ChunkKV, Quest) for PyTorch.

The low-level API works on torch tensors without copying them::

    import skv, torch
    cache = skv.Cache("sentence_kv", num_layers=30, num_q_heads=9, num_kv_heads=3, head_dim=64,
                      dtype=torch.float32, budget=256, boundaries=skv.sentence_boundaries(tokenizer))
    cache.prefill(layer, k, v, q, token_ids)          # k, v: [tokens, kv_heads, head_dim]; q: [tokens, q_heads, head_dim]
    out = cache.step(layer, k1, v1, q1, new_ids)       # one token per sequence; out: [batch, q_heads, head_dim]
    indptr, indices = cache.selection(layer)          # what each (sequence, KV head) attended, as int32 tensors

`skv.transformers.SkvCache` runs a preset inside `model.generate()` of a Hugging Face transformers model.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch.utils.dlpack import to_dlpack

from . import _skv

__all__ = ["Cache", "presets", "sentence_boundaries", "ends_sentence", "backend"]

backend = _skv.backend
ends_sentence = _skv.ends_sentence


def presets() -> list[str]:
    """The preset names (the typedefs of include/skv/presets.hpp)."""
    return list(_skv.presets())


def sentence_boundaries(tokenizer_or_vocab) -> list[int]:
    """Ids of every token whose decoded text ends a sentence (merged BPE tokens such as '."' included).

    Takes a Hugging Face tokenizer (each id is decoded on its own) or a list of token texts indexed by id."""
    if isinstance(tokenizer_or_vocab, (list, tuple)):
        vocab = list(tokenizer_or_vocab)
    else:
        tok = tokenizer_or_vocab
        n = len(tok)
        vocab = [tok.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in range(n)]
    return list(_skv.sentence_boundaries(vocab))


_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_BACKENDS: dict[str, object] = {"cpu": _skv}


def _backend_for(device: torch.device):
    if device.type == "cpu":
        return _skv
    if device.type == "cuda":
        if "cuda" not in _BACKENDS:
            try:
                from . import _skv_cuda  # noqa: WPS433 (built only with the CUDA toolkit and a CUDA torch)
            except ImportError as e:
                raise ValueError(
                    "skv.Cache: tensors are on a CUDA device but this skv was built without its CUDA backend "
                    "(reinstall with the CUDA toolkit present and a CUDA-enabled torch)"
                ) from e
            _BACKENDS["cuda"] = _skv_cuda
        return _BACKENDS["cuda"]
    raise ValueError(f"skv.Cache: tensors on device '{device}'; allowed: cpu, cuda")


def _dl(t: torch.Tensor):
    """How a tensor crosses into the extension on the decode path. A CPU tensor goes as the DLPack capsule of
    torch.utils.dlpack.to_dlpack (~0.6 µs), not as the tensor, whose Tensor.__dlpack__ nanobind would call (~4.7 µs,
    written in Python; five tensors per step). A CUDA tensor goes as itself: __dlpack__ orders its stream."""
    if t.requires_grad:
        t = t.detach()
    return to_dlpack(t) if t.is_cpu else t


def _ids(x, what: str) -> torch.Tensor:
    """A contiguous int32 CPU tensor of token ids / offsets (lists, numpy arrays and tensors accepted)."""
    if (isinstance(x, torch.Tensor) and x.dtype == torch.int32 and x.device.type == "cpu" and x.dim() == 1
            and x.is_contiguous()):
        return x  # the decode path's usual case, without the copies below (integer tensors carry no grad)
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"skv.Cache: argument '{what}' has dtype {t.dtype}; allowed: an integer dtype")
    return t.reshape(-1).to(device="cpu", dtype=torch.int32).contiguous()


class Cache:
    """One skv preset for every layer of a batch of sequences (see include/skv/presets.hpp and docs/policies.md).

    Args:
        preset: a name of `skv.presets()`, e.g. "sentence_kv", "snap_kv", "full_kv".
        num_layers, num_q_heads, num_kv_heads, head_dim: the attention geometry (head_dim 64, 96, 128 or 256).
        dtype: the K/V storage type, torch.float32 / torch.float16 / torch.bfloat16; the tensors passed in must
            have it.
        budget: tokens per (sequence, KV head), the preset's τ (default: the preset's own).
        boundaries: token ids that end a sentence (read by the sentence presets, ignored by the others; see
            `sentence_boundaries`).
        device: "cpu" or "cuda"; default: that of the first prefill's tensors.
        **options: preset options by name (sink, recent, fallback, factor, window, kernel, unit, query,
            dense_layers, max_length, min_length, segment_size, softmax_scale, check_values, ...; an unknown
            one raises ValueError listing those the preset has).
    """

    def __init__(self, preset: str, num_layers: int, num_q_heads: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, budget: int | None = None,
                 boundaries: Iterable[int] | None = None, device: str | torch.device | None = None, **options):
        if dtype not in _DTYPES:
            raise TypeError(f"skv.Cache: argument 'dtype' is {dtype}; allowed: torch.float32, torch.float16, "
                            "torch.bfloat16")
        self.preset = preset
        self.dtype = dtype
        self.shape = (num_layers, num_q_heads, num_kv_heads, head_dim)
        self._options = dict(options)
        if budget is not None:
            self._options["budget"] = int(budget)
        if boundaries is not None:
            self._options["boundaries"] = [int(b) for b in boundaries]
        self.device = None
        # the CPU backend's cache: made now, so that a bad preset or option raises here
        self._handle = self._make(_skv)
        if device is not None:
            self._bind(torch.device(device))

    # -- construction ---------------------------------------------------------------------------------------------
    def _make(self, module):
        return module.make_cache(self.preset, *self.shape, _DTYPES[self.dtype], self._options)

    def _bind(self, device: torch.device):
        module = _backend_for(device)
        if module is not _skv:
            self._handle = self._make(module)
        self.device = device

    def _check_device(self, *tensors):
        if self.device is None:
            self._bind(tensors[0].device)
        on_cpu = self.device.type == "cpu"
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"skv.Cache: expected torch tensors, got {type(t).__name__}")
            if not (t.is_cpu if on_cpu else t.is_cuda):  # flags, not t.device: no device object per call
                raise ValueError(f"skv.Cache: a tensor is on {t.device}; allowed: {self.device} (the cache's device)")

    # -- the API --------------------------------------------------------------------------------------------------
    def prefill(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor | None, token_ids,
                indptr: Sequence[int] | torch.Tensor | None = None) -> None:
        """Stores a prompt batch for `layer` (after the model's own dense prefill attention).

        k, v: [rows, num_kv_heads, head_dim] post-RoPE keys and values (any strides with head_dim contiguous: NHD,
        or an HND buffer permuted to [rows, heads, head_dim]); q: [rows, num_q_heads, head_dim] or None when the
        preset reads no prompt queries; token_ids: [rows]; indptr: [batch + 1] row offsets (default: one
        sequence)."""
        self._check_device(k, v, *([q] if q is not None else []))
        ids = _ids(token_ids, "token_ids")
        ptr = _ids([0, k.shape[0]] if indptr is None else indptr, "indptr")
        self._handle.prefill(layer, k.detach(), v.detach(), None if q is None else q.detach(), ids, ptr)

    def step(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor, token_ids,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """One decode step of `layer`: append each sequence's new token, select, attend. Returns `out`
        ([batch, num_q_heads, head_dim], allocated when not given). k, v: [batch, num_kv_heads, head_dim];
        q: [batch, num_q_heads, head_dim]; token_ids: [batch] (host)."""
        self._check_device(k, v, q)
        if out is None:
            out = torch.empty((q.shape[0], q.shape[1], q.shape[2]), dtype=self.dtype, device=q.device)
        self._handle.step(layer, _dl(k), _dl(v), _dl(q), _ids(token_ids, "token_ids"), _dl(out))
        return out

    def _time_steps(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor, token_ids,
                    out: torch.Tensor, iterations: int) -> float:
        """Benchmark hook: `iterations` calls of `step` in a C++ loop (no Python in between, GIL released); returns
        seconds per step. Each call appends a token, as `step` does. bench/python/speed.py uses it as the baseline of
        the Python boundary's cost."""
        self._check_device(k, v, q)
        return self._handle.time_steps(layer, _dl(k), _dl(v), _dl(q), _ids(token_ids, "token_ids"), _dl(out),
                                       iterations)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor, token_ids) -> None:
        """The first part of `step` alone (the selection and attention can follow with `attend`)."""
        self._check_device(k, v, q)
        self._handle.append(layer, _dl(k), _dl(v), _dl(q), _ids(token_ids, "token_ids"))

    def attend(self, layer: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of the current decode query over the selection (selecting first if needed)."""
        if self.device is None:
            raise ValueError(f"skv.Cache.attend: layer {layer} holds no prompt: call prefill() for it first")
        if out is None:
            b = self._handle.batch_size(layer)
            out = torch.empty((b, self.shape[1], self.shape[3]), dtype=self.dtype, device=self.device)
        self._handle.attend(layer, _dl(out))
        return out

    def selection(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr [pairs + 1], indices [nnz]) int32 CPU tensors: the logical positions each (sequence, KV head)
        pair, p = sequence * num_kv_heads + kv_head, attended at the last step."""
        indptr, indices = self._handle.selection(layer)
        return torch.from_numpy(indptr), torch.from_numpy(indices)

    def ledger(self) -> dict:
        """Bytes resident per tier, and bytes moved between tiers since the last call."""
        return dict(self._handle.ledger())

    def reserve(self, max_batch: int, max_tokens: int) -> None:
        """Allocates every buffer up front; decoding within these sizes then allocates nothing."""
        self._handle.reserve(max_batch, max_tokens)

    def reset(self) -> None:
        """Drops every layer's contents."""
        self._handle.reset()

    def length(self, layer: int, seq: int = 0) -> int:
        return self._handle.length(layer, seq)

    def retained(self, layer: int, seq: int = 0, head: int = 0) -> int:
        return self._handle.retained(layer, seq, head)

    def segment_begins(self, layer: int, seq: int = 0) -> list[int]:
        return list(self._handle.segment_begins(layer, seq))

    def window(self, layer: int = 0) -> int:
        """Prompt queries the preset reads at prefill (0: `q` may be None)."""
        return self._handle.window(layer)

    @property
    def softmax_scale(self) -> float:
        return self._handle.softmax_scale

    def __repr__(self):
        layers, qh, kvh, d = self.shape
        return (f"skv.Cache({self.preset!r}, num_layers={layers}, num_q_heads={qh}, num_kv_heads={kvh}, "
                f"head_dim={d}, dtype={self.dtype}, device={self.device}, options={self._options})")
