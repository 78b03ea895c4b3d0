"""Multi-head attention that can also report how much its first queries attend to each key.

The importance bars of the GUI come from the class tokens' attention rows. Computing only those
rows next to the fused attention kernel costs ``n_rows x N`` dot products, a second pass of
nothing else, so the model can report importance on every forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from star_har.errors import InvalidInputError


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value sets.

    forward(query (B, Nq, D), context (B, Nk, D), rows: int) -> (out (B, Nq, D), attn (B, rows, Nk))
    where ``attn`` is the softmax attention of the first ``rows`` queries, averaged over heads
    (``rows = 0`` gives an empty tensor).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise InvalidInputError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, context: torch.Tensor, rows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        q = self._heads(self.to_q(query))
        k, v = (self._heads(t) for t in self.to_kv(context).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = self.proj(out.transpose(1, 2).flatten(2))
        scores = (q[:, :, :rows] @ k.transpose(-2, -1)) * self.head_dim ** -0.5
        return out, scores.softmax(dim=-1).mean(dim=1)


class FeedForward(nn.Sequential):
    """Linear -> GELU -> dropout -> Linear -> dropout, on ``(..., dim)``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


def sinusoidal_encoding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sine/cosine encoding ``(N, dim)`` of integer or fractional ``positions`` ``(N,)``."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32)
                     * (-torch.log(torch.tensor(10000.0)) / max(half - 1, 1)))
    angles = positions.float()[:, None] * freq[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=-1)
