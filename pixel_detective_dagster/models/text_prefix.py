"""CLIP's text tower as exportable modules, one of them run on the tokens up to the end-of-text token only.

open_clip's built-in text transformer is causal and pools the end-of-text position (the largest token id,
``text_pool_type == "argmax"``), so the padding after that token never reaches the embedding. A query of
eight tokens then needs eight positions instead of the context's 77: the same vector (checked against
the full tower at export) for a fraction of the work.
"""

from __future__ import annotations

import torch
from torch.nn import functional


class TextEncoder(torch.nn.Module):
    """The model's normalised text embedding over the full context (any open_clip text tower)."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return functional.normalize(self.clip.encode_text(tokens).float(), dim=-1)


class PrefixTextEncoder(TextEncoder):
    """The same embedding from a token prefix of any length that holds each row's end-of-text token."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        clip, positions = self.clip, tokens.shape[1]
        dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(dtype) + clip.positional_embedding[:positions].to(dtype)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:positions, :positions]))
        pooled = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        projection = clip.text_projection
        if isinstance(projection, torch.nn.Linear):
            pooled = projection(pooled)
        elif projection is not None:
            pooled = pooled @ projection
        return functional.normalize(pooled.float(), dim=-1)


def causal_argmax_text(clip: torch.nn.Module) -> bool:
    """Whether ``clip`` has open_clip's built-in causal text tower pooled at the end-of-text token."""
    mask = getattr(clip, "attn_mask", None)
    if getattr(clip, "text_pool_type", None) != "argmax" or not isinstance(mask, torch.Tensor):
        return False
    if not all(hasattr(clip, name) for name in ("token_embedding", "positional_embedding", "ln_final")):
        return False
    return torch.equal(mask, torch.full_like(mask, float("-inf")).triu(1))
