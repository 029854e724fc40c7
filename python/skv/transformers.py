"""skv presets inside Hugging Face transformers' `model.generate()`.

    from skv.transformers import SkvCache
    cache = SkvCache(model, preset="sentence_kv", budget=256, tokenizer=tok)
    out = model.generate(**inputs, past_key_values=cache, max_new_tokens=32)

How it plugs in: `SkvCache` is a `transformers.Cache` whose full-attention layers are `SkvLayer`s, and the model's
attention implementation becomes "skv" (registered with `AttentionInterface`, masks as SDPA's). The prompt's own
attention stays exact (PyTorch SDPA over the prompt), after which the layer's K/V/Q go to the preset's `prefill`;
every decode-time attention of a full-attention layer is the preset's `step` (append, select, attend). Sliding-window
layers (Gemma 3's local layers) keep transformers' own sliding cache and attention: the preset governs the global
layers. Calls with any other cache, or none, fall back to SDPA, so the model keeps working as before.

Limits: batch size 1, or a batch of equally long prompts without padding; greedy/sampling decoding (no beam search:
the cache cannot be reordered); the prompt in one forward call.
"""
from __future__ import annotations

import contextvars
import weakref
from typing import Any

import torch
import transformers
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicSlidingWindowLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from . import Cache as _SkvCore, sentence_boundaries

__all__ = ["SkvCache", "SkvLayer", "enable"]

IMPLEMENTATION = "skv"
# (SkvCache, layer index) of the layer whose update() ran last: its attention call follows in the same thread
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("skv_active_layer", default=None)
_IDS: contextvars.ContextVar = contextvars.ContextVar("skv_input_ids", default=None)


def skv_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The "skv" attention implementation: SkvLayers' decode steps go through skv; everything else is SDPA."""
    active = _ACTIVE.get()
    if active is None or active[1] != getattr(module, "layer_idx", None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    cache, layer_idx = active
    _ACTIVE.set(None)
    layer = cache.layers[layer_idx]
    if query.shape[2] > 1:  # the prompt: exact attention, then hand the layer to the preset
        out = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                     **kwargs)
        layer._prefill(query, key, value)
        return out
    return layer._step(query, key, value), None


def _capture_ids(model, args, kwargs):
    ids = kwargs.get("input_ids")
    if ids is None and args:
        ids = args[0]
    _IDS.set(ids)


def enable(model) -> None:
    """Registers the "skv" attention implementation and makes `model` use it (idempotent). SkvCache does it."""
    AttentionInterface.register(IMPLEMENTATION, skv_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    if getattr(model, "_skv_enabled", False):
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(IMPLEMENTATION)
    else:  # older transformers
        model.config._attn_implementation = IMPLEMENTATION
    model.register_forward_pre_hook(_capture_ids, with_kwargs=True)
    model._skv_enabled = True


class SkvLayer(CacheLayerMixin):
    """A full-attention layer whose K/V live in an skv preset (no torch K/V is kept here)."""

    is_sliding = False
    is_compileable = False

    def __init__(self, owner: "SkvCache", layer_idx: int, skv_layer: int):
        super().__init__()
        self.owner, self.layer_idx, self.skv_layer = owner, layer_idx, skv_layer

    # The cache owns its layers; a layer refers back weakly, so that a dropped SkvCache (and the K/V its skv core
    # holds) is freed at once rather than at Python's next cyclic garbage collection.
    @property
    def owner(self) -> "SkvCache":
        owner = self._owner() if self._owner is not None else None
        if owner is None:
            raise ValueError("skv.transformers.SkvLayer: its SkvCache no longer exists")
        return owner

    @owner.setter
    def owner(self, cache: "SkvCache | None") -> None:
        self._owner = weakref.ref(cache) if cache is not None else None
        self.seq_length = 0
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        pass

    def update(self, key_states, value_states, cache_kwargs: dict[str, Any] | None = None):
        _ACTIVE.set((self.owner, self.layer_idx))
        return key_states, value_states

    def _prefill(self, query, key, value):
        b, _, n, _ = key.shape
        ids = self.owner._token_ids(b, n)
        core = self.owner.skv
        dt = core.dtype
        if b == 1:  # [1, heads, n, dim] -> [n, heads, dim] views, no copy (HND strides)
            k, v, q = key[0].transpose(0, 1), value[0].transpose(0, 1), query[0].transpose(0, 1)
        else:  # equally long prompts, packed
            k = key.transpose(1, 2).reshape(b * n, key.shape[1], key.shape[3])
            v = value.transpose(1, 2).reshape(b * n, value.shape[1], value.shape[3])
            q = query.transpose(1, 2).reshape(b * n, query.shape[1], query.shape[3])
        core.prefill(self.skv_layer, k.to(dt), v.to(dt), q.to(dt) if core.window(self.skv_layer) > 0 else None,
                     ids.reshape(-1), [i * n for i in range(b + 1)])
        self.seq_length = n

    def _step(self, query, key, value):
        b = query.shape[0]
        ids = self.owner._token_ids(b, 1).reshape(-1)
        dt = self.owner.skv.dtype
        out = self.owner.skv.step(self.skv_layer, key[:, :, 0].to(dt), value[:, :, 0].to(dt),
                                  query[:, :, 0].to(dt), ids)
        self.seq_length += 1
        return out.to(query.dtype).unsqueeze(1)  # [batch, 1, q_heads, head_dim], as SDPA returns

    def get_mask_sizes(self, cache_position: torch.Tensor) -> tuple[int, int]:
        return self.seq_length + cache_position.shape[0], 0

    def get_seq_length(self) -> int:
        return self.seq_length

    def get_max_cache_shape(self) -> int:
        return -1

    def reset(self) -> None:
        self.seq_length = 0

    def reorder_cache(self, beam_idx):
        raise NotImplementedError("skv.transformers.SkvCache: beam search (cache reordering) is not supported")


class SkvCache(Cache):
    """A transformers Cache whose full-attention layers run an skv preset (see the module docstring).

    Args:
        model: a causal LM (Llama family, Gemma 3, ...). Its attention implementation becomes "skv".
        preset: a name of `skv.presets()`.
        budget: tokens per (sequence, KV head) (the preset's τ).
        tokenizer: the model's tokenizer: sentence presets derive their boundary ids from it.
        dtype: K/V storage type (default: the model's dtype).
        boundaries: explicit boundary token ids (instead of `tokenizer`).
        **options: further preset options (see `skv.Cache`).
    """

    def __init__(self, model, preset: str = "sentence_kv", budget: int | None = None, tokenizer=None,
                 dtype: torch.dtype | None = None, boundaries=None, **options):
        config = model.config.get_text_config(decoder=True)
        n = config.num_hidden_layers
        layer_types = getattr(config, "layer_types", None) or ["full_attention"] * n
        sliding_window = getattr(config, "sliding_window", None)
        self.global_layers = [i for i, t in enumerate(layer_types) if t == "full_attention"]
        layers = []
        for i, t in enumerate(layer_types):
            if t in ("sliding_attention", "chunked_attention"):
                layers.append(DynamicSlidingWindowLayer(sliding_window=sliding_window))
            else:
                layers.append(SkvLayer(self, i, self.global_layers.index(i)))
        super().__init__(layers=layers)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        scaling = _scaling_of(model, self.global_layers[0], head_dim)
        if boundaries is None and tokenizer is not None and "sentence" in preset:
            boundaries = sentence_boundaries(tokenizer)
        self.skv = _SkvCore(preset, num_layers=len(self.global_layers), num_q_heads=config.num_attention_heads,
                            num_kv_heads=config.num_key_value_heads, head_dim=head_dim,
                            dtype=dtype or model.dtype, budget=budget, boundaries=boundaries,
                            softmax_scale=scaling, **options)
        enable(model)

    def _token_ids(self, batch: int, n: int) -> torch.Tensor:
        ids = _IDS.get()
        if ids is None:
            raise ValueError("skv.transformers.SkvCache: the model was called without input_ids (inputs_embeds are "
                             "not supported: segmentation needs token ids)")
        ids = ids[:, -n:] if ids.dim() == 2 else ids.reshape(batch, -1)[:, -n:]
        if ids.shape != (batch, n):
            raise ValueError(f"skv.transformers.SkvCache: input_ids of shape {tuple(ids.shape)} for {batch} "
                             f"sequences of {n} new tokens (padding is not supported)")
        return ids

    def selection(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The skv selection of model layer `layer_idx` (a full-attention layer) at the last decode step."""
        return self.skv.selection(self.global_layers.index(layer_idx))


def _scaling_of(model, layer_idx: int, head_dim: int) -> float:
    for m in model.modules():
        if getattr(m, "layer_idx", None) == layer_idx and hasattr(m, "scaling"):
            return float(m.scaling)
    return head_dim ** -0.5
