"""A UNet of the DDPM++ family (Song et al. 2021; the EDM code's ``SongUNet`` layout), channels-last, in Flax NNX.

Encoder: a 3×3 input conv, then per resolution ``num_blocks`` residual blocks (channels ``model_channels·mult``)
and a down-sampling residual block between resolutions; decoder: two blocks at the lowest resolution (the first
with attention), then per resolution ``num_blocks + 1`` blocks fed with the encoder's skips and an up-sampling
residual block; output ``GroupNorm → SiLU → conv3×3``. Residual block:
``h = conv(SiLU(GN(x))); h = conv(dropout(SiLU(GN(h + W emb)))); x = (h + skip(x))/√2`` (+ self-attention at the
``attn_resolutions``, also scaled by 1/√2). Re-sampling is the 2×2 box filter (``resample_filter=[1, 1]``) with a
1×1 projection on the skip path. ``ddpmpp_cifar10()`` is the EDM CIFAR-10 configuration (≈56 M parameters).

``dtype`` is the compute dtype (``jnp.bfloat16`` for mixed precision; parameters stay float32). Attention uses
``jax.nn.dot_product_attention`` (cuDNN flash attention on GPUs when available).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import NoiseEmbedding


def _groups(channels: int) -> int:
    return min(32, channels // 4)


def _down(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ResBlock(nnx.Module):
    """DDPM++ residual block (Song et al. 2021): ``h = conv(SiLU(GN(x)))`` (resampled), ``+ A·emb``,
    ``conv(dropout(SiLU(GN(h))))``; output ``(h + skip(x))/√2``, then optional self-attention ``(x + attn(x))/√2``."""

    def __init__(self, cin: int, cout: int, emb: int, resample: str | None = None, attention: bool = False,
                 dropout: float = 0.0, dtype=jnp.float32, *, rngs: nnx.Rngs):
        kw = dict(rngs=rngs, dtype=dtype)
        self.resample = resample
        self.norm0 = nnx.GroupNorm(cin, num_groups=_groups(cin), epsilon=1e-6, **kw)
        self.conv0 = nnx.Conv(cin, cout, (3, 3), **kw)
        self.affine = nnx.Linear(emb, cout, **kw)
        self.norm1 = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-6, **kw)
        self.rate = float(dropout)
        self.conv1 = nnx.Conv(cout, cout, (3, 3), **kw)
        self.skip = nnx.Conv(cin, cout, (1, 1), **kw) if (cin != cout or resample) else None
        self.attention = attention
        if attention:
            self.norm2 = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-6, **kw)
            self.qkv = nnx.Conv(cout, 3 * cout, (1, 1), **kw)
            self.proj = nnx.Conv(cout, cout, (1, 1), **kw)

    def _resample(self, x):
        if self.resample == "down":
            return _down(x)
        if self.resample == "up":
            return _up(x)
        return x

    def __call__(self, x, emb, dropout_key=None):
        h = self._resample(jax.nn.silu(self.norm0(x)))
        h = self.conv0(h)
        h = jax.nn.silu(self.norm1(h + self.affine(emb)[:, None, None, :]))
        if dropout_key is not None and self.rate > 0:  # inverted dropout with an explicit key (pure: no RNG state)
            keep = jax.random.bernoulli(dropout_key, 1.0 - self.rate, h.shape)
            h = jnp.where(keep, h / (1.0 - self.rate), 0).astype(h.dtype)
        h = self.conv1(h)
        skip = self._resample(x)
        if self.skip is not None:
            skip = self.skip(skip)
        x = (h + skip) * (1 / math.sqrt(2))
        if self.attention:
            b, hh, ww, c = x.shape
            q, k, v = jnp.split(self.qkv(self.norm2(x)).reshape(b, hh * ww, 1, 3 * c), 3, axis=-1)
            a = jax.nn.dot_product_attention(q, k, v).reshape(b, hh, ww, c)
            x = (self.proj(a) + x) * (1 / math.sqrt(2))
        return x


class UNet(nnx.Module):
    """``F_θ(x, c_noise[, labels]) → (B, H, W, out_channels)`` for images ``(B, H, W, C)``.

    Args:
      image_shape: ``(H, W, C)``; H and W divisible by ``2^(len(channel_mult) − 1)``.
      model_channels, channel_mult, num_blocks, attn_resolutions, dropout: the DDPM++ knobs.
      embedding: 'positional' (DDPM++) or 'fourier' (NCSN++) noise embedding.
      num_classes: > 0 adds class conditioning (and a null token for classifier-free guidance).
      in_mult, out_mult: channel multipliers of input/output (CLD: the state (x, v) has 2·C channels).
      dtype: compute dtype (bfloat16 for mixed precision).
    """

    def __init__(self, image_shape: Sequence[int], model_channels: int = 128, channel_mult: Sequence[int] = (2, 2, 2),
                 num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,), dropout: float = 0.0,
                 embedding: str = "positional", num_classes: int = 0, in_mult: int = 1, out_mult: int = 1,
                 dtype=jnp.float32, *, rngs: nnx.Rngs):
        h, w, c = (int(s) for s in image_shape)
        factor = 2 ** (len(channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {(h, w)} must be divisible by {factor} for {len(channel_mult)} resolutions")
        self.image_shape, self.dtype = (h, w, c), dtype
        emb = 4 * model_channels
        kw = dict(rngs=rngs, dtype=dtype)
        bkw = dict(dropout=dropout, dtype=dtype, rngs=rngs)
        self.embed = NoiseEmbedding(model_channels, emb, embedding, num_classes, rngs=rngs)
        self.conv_in = nnx.Conv(c * in_mult, model_channels, (3, 3), **kw)
        enc, skips, cout = [], [model_channels], model_channels
        for level, mult in enumerate(channel_mult):
            res = h >> level
            if level > 0:
                enc.append(ResBlock(cout, cout, emb, resample="down", **bkw))
                skips.append(cout)
            for _ in range(num_blocks):
                enc.append(ResBlock(cout, model_channels * mult, emb, attention=res in attn_resolutions, **bkw))
                cout = model_channels * mult
                skips.append(cout)
        self.enc = nnx.List(enc)
        self.mid = nnx.List([ResBlock(cout, cout, emb, attention=True, **bkw), ResBlock(cout, cout, emb, **bkw)])
        dec = []
        self.dec_layout = []  # per decoder block: does it take a skip?
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = h >> level
            if level < len(channel_mult) - 1:
                dec.append(ResBlock(cout, cout, emb, resample="up", **bkw))
                self.dec_layout.append(False)
            for idx in range(num_blocks + 1):
                cin = cout + skips.pop()
                cout = model_channels * mult
                dec.append(ResBlock(cin, cout, emb, attention=(idx == num_blocks and res in attn_resolutions), **bkw))
                self.dec_layout.append(True)
        self.dec = nnx.List(dec)
        self.norm_out = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-6, **kw)
        self.conv_out = nnx.Conv(cout, c * out_mult, (3, 3), **kw)

    def __call__(self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        """``dropout_key`` switches dropout on (training); without it the network is deterministic."""
        out_dtype = x.dtype
        emb = jax.nn.silu(self.embed(c_noise, x.shape[0], labels)).astype(self.dtype)
        h = self.conv_in(x.astype(self.dtype))
        skips = [h]
        blocks = list(self.enc) + list(self.mid) + list(self.dec)
        keys = [None] * len(blocks) if dropout_key is None else list(jax.random.split(dropout_key, len(blocks)))
        for block, k in zip(self.enc, keys):
            h = block(h, emb, k)
            skips.append(h)
        for block, k in zip(self.mid, keys[len(self.enc):]):
            h = block(h, emb, k)
        for block, takes_skip, k in zip(self.dec, self.dec_layout, keys[len(self.enc) + len(self.mid):]):
            if takes_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = block(h, emb, k)
        return self.conv_out(jax.nn.silu(self.norm_out(h))).astype(out_dtype)


def ddpmpp_cifar10(num_classes: int = 0, dropout: float = 0.13, dtype=jnp.float32, rngs: nnx.Rngs | None = None) -> UNet:
    """EDM's DDPM++ CIFAR-10 network: channels 128, multipliers (2, 2, 2), 4 blocks per resolution, attention at
    16×16, positional embedding."""
    return UNet((32, 32, 3), 128, (2, 2, 2), 4, (16,), dropout, "positional", num_classes, dtype=dtype,
                rngs=rngs or nnx.Rngs(0))


def count_params(model: nnx.Module) -> int:
    """The number of trainable parameters of ``model``."""
    return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def build(data_shape, options: dict, **common) -> UNet:
    """The registry's builder: ``options`` from a config's ``model`` section (channels, channel_mult, num_blocks,
    attn_resolutions, dropout, embedding)."""
    return UNet(data_shape, options.get("channels", 128), tuple(options.get("channel_mult", (2, 2, 2))),
                options.get("num_blocks", 4), tuple(options.get("attn_resolutions", (16,))),
                options.get("dropout", 0.0), options.get("embedding", "positional"), **common)
