"""Building blocks shared by the networks: noise embeddings and the conditioning MLP."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def positional_embedding(c_noise: jax.Array, channels: int, max_positions: float = 10000.0) -> jax.Array:
    """Transformer sinusoids of the noise label (DDPM++): ``[cos(c·f_k), sin(c·f_k)]`` with
    ``f_k = max_positions^{−k/(channels/2 − 1)}``, k = 0…channels/2 − 1."""
    half = channels // 2
    freqs = (1.0 / max_positions) ** (jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1))
    arg = jnp.asarray(c_noise, jnp.float32).reshape(-1, 1) * freqs
    return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class FourierEmbedding(nnx.Module):
    """Random Fourier features of the noise label (NCSN++): ``[cos(2π c ω), sin(2π c ω)]``, ω ~ N(0, scale²),
    fixed (not trained)."""

    def __init__(self, channels: int, scale: float = 16.0, *, rngs: nnx.Rngs):
        self.freqs = nnx.Variable(jax.random.normal(rngs.params(), (channels // 2,)) * scale)

    def __call__(self, c_noise: jax.Array) -> jax.Array:
        arg = 2 * math.pi * jnp.asarray(c_noise, jnp.float32).reshape(-1, 1) * self.freqs[...]
        return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], axis=-1)


class NoiseEmbedding(nnx.Module):
    """Noise label (+ optional class label) → conditioning vector: embedding, then ``Linear → SiLU → Linear``.

    Class labels ``0…num_classes−1``; the extra index ``num_classes`` is the "no label" token used by
    classifier-free guidance.
    """

    def __init__(self, channels: int, emb_channels: int, kind: str = "positional", num_classes: int = 0, *,
                 rngs: nnx.Rngs):
        if kind not in ("positional", "fourier"):
            raise ValueError(f"noise embedding must be 'positional' or 'fourier', got {kind!r}")
        self.channels, self.kind, self.num_classes = channels, kind, num_classes
        self.fourier = FourierEmbedding(channels, rngs=rngs) if kind == "fourier" else None
        self.label = nnx.Embed(num_classes + 1, channels, rngs=rngs) if num_classes else None
        self.lin0 = nnx.Linear(channels, emb_channels, rngs=rngs)
        self.lin1 = nnx.Linear(emb_channels, emb_channels, rngs=rngs)

    def __call__(self, c_noise: jax.Array, batch: int, labels: jax.Array | None = None) -> jax.Array:
        c = jnp.broadcast_to(jnp.asarray(c_noise, jnp.float32).reshape(-1), (batch,))
        emb = positional_embedding(c, self.channels) if self.fourier is None else self.fourier(c)
        if self.label is not None:
            if labels is None:
                labels = jnp.full((batch,), self.num_classes, jnp.int32)  # unconditional token
            emb = emb + self.label(labels)
        return self.lin1(jax.nn.silu(self.lin0(emb)))
