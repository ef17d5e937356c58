"""The ADM UNet of Dhariwal & Nichol (2021) in the EDM code's layout (``DhariwalUNet``), channels-last, Flax NNX.

Same skeleton as DDPM++ (:mod:`.unet`, whose residual block it reuses) with ADM's choices: adaptive group
normalisation ``GN(h)·(1 + scale) + shift`` from the embedding, no 1/√2 on the residuals, GroupNorm ε = 1e-5,
resampling of the skip path without a projection, multi-head attention (64 channels per head) at every block of
the ``attn_resolutions`` (decoder included), the class label added *after* the noise MLP, and sinusoids without
the endpoint. ``adm_imagenet64()`` is EDM's ImageNet-64 configuration (≈296 M parameters).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from .layers import positional_embedding
from .unet import ResBlock, _groups


class ADMUNet(nnx.Module):
    """``F_θ(x, c_noise[, labels]) → (B, H, W, C·out_mult)``; labels ``0…num_classes − 1`` (``num_classes``: no label).

    Args: as :class:`~diffjax.models.UNet`; ADM's defaults are channels 192, multipliers (1, 2, 3, 4), 3 blocks,
    attention at 32, 16 and 8.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.0,
        num_classes: int = 0,
        in_mult: int = 1,
        out_mult: int = 1,
        dtype=jnp.float32,
        *,
        channels_per_head: int = 64,
        rngs: nnx.Rngs,
    ):
        h, w, c = (int(s) for s in image_shape)
        factor = 2 ** (len(channel_mult) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {(h, w)} must be divisible by {factor} for {len(channel_mult)} resolutions")
        self.image_shape, self.dtype, self.model_channels, self.num_classes = (
            (h, w, c),
            dtype,
            model_channels,
            num_classes,
        )
        emb = 4 * model_channels
        kw = dict(rngs=rngs, dtype=dtype)
        self.map_layer0 = nnx.Linear(model_channels, emb, rngs=rngs)
        self.map_layer1 = nnx.Linear(emb, emb, rngs=rngs)
        self.label = nnx.Embed(num_classes + 1, emb, rngs=rngs) if num_classes else None

        def block(cin, cout, res, resample=None, attention=None):
            attn = (res in attn_resolutions) if attention is None else attention
            return ResBlock(
                cin,
                cout,
                emb,
                resample,
                attn,
                dropout,
                dtype,
                adaptive_scale=True,
                skip_scale=1.0,
                eps=1e-5,
                resample_proj=False,
                heads=max(cout // channels_per_head, 1),
                rngs=rngs,
            )

        cout = model_channels * channel_mult[0]
        self.conv_in = nnx.Conv(c * in_mult, cout, (3, 3), **kw)
        enc, skips = [], [cout]
        for level, mult in enumerate(channel_mult):
            res = h >> level
            if level > 0:
                enc.append(block(cout, cout, res, "down", attention=False))
                skips.append(cout)
            for _ in range(num_blocks):
                enc.append(block(cout, model_channels * mult, res))
                cout = model_channels * mult
                skips.append(cout)
        self.enc = nnx.List(enc)
        res = h >> (len(channel_mult) - 1)
        self.mid = nnx.List([block(cout, cout, res, attention=True), block(cout, cout, res, attention=False)])
        dec, dec_layout = [], []
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = h >> level
            if level < len(channel_mult) - 1:
                dec.append(block(cout, cout, res, "up", attention=False))
                dec_layout.append(False)
            for _ in range(num_blocks + 1):
                cin = cout + skips.pop()
                cout = model_channels * mult
                dec.append(block(cin, cout, res))
                dec_layout.append(True)
        self.dec = nnx.List(dec)
        self.dec_layout = tuple(dec_layout)
        self.norm_out = nnx.GroupNorm(cout, num_groups=_groups(cout), epsilon=1e-5, **kw)
        self.conv_out = nnx.Conv(cout, c * out_mult, (3, 3), **kw)

    def __call__(
        self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        out_dtype, b = x.dtype, x.shape[0]
        c = jnp.broadcast_to(jnp.asarray(c_noise, jnp.float32).reshape(-1), (b,))
        emb = self.map_layer1(
            jax.nn.silu(self.map_layer0(positional_embedding(c, self.model_channels, endpoint=False)))
        )
        if self.label is not None:
            if labels is None:
                labels = jnp.full((b,), self.num_classes, jnp.int32)
            emb = emb + self.label(labels)
        emb = jax.nn.silu(emb).astype(self.dtype)
        h = self.conv_in(x.astype(self.dtype))
        skips = [h]
        blocks = list(self.enc) + list(self.mid) + list(self.dec)
        keys = [None] * len(blocks) if dropout_key is None else list(jax.random.split(dropout_key, len(blocks)))
        for block, k in zip(self.enc, keys):
            h = block(h, emb, k)
            skips.append(h)
        for block, k in zip(self.mid, keys[len(self.enc) :]):
            h = block(h, emb, k)
        for block, takes_skip, k in zip(self.dec, self.dec_layout, keys[len(self.enc) + len(self.mid) :]):
            if takes_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = block(h, emb, k)
        return self.conv_out(jax.nn.silu(self.norm_out(h))).astype(out_dtype)


def adm_imagenet64(
    num_classes: int = 1000, dropout: float = 0.1, out_mult: int = 1, dtype=jnp.float32, rngs: nnx.Rngs | None = None
) -> ADMUNet:
    """EDM's ImageNet-64 ADM network: channels 192, multipliers (1, 2, 3, 4), 3 blocks, attention at 32/16/8."""
    return ADMUNet(
        (64, 64, 3),
        192,
        (1, 2, 3, 4),
        3,
        (32, 16, 8),
        dropout,
        num_classes,
        out_mult=out_mult,
        dtype=dtype,
        rngs=rngs or nnx.Rngs(0),
    )


OPTIONS = {
    "channels": 192,
    "channel_mult": (1, 2, 3, 4),
    "num_blocks": 3,
    "attn_resolutions": (32, 16, 8),
    "dropout": 0.0,
    "channels_per_head": 64,
}


def build(data_shape, options: dict, **common) -> ADMUNet:
    """The registry's builder (``options``: the keys of ``OPTIONS``)."""
    o = {k: options.get(k, v) for k, v in OPTIONS.items()}
    return ADMUNet(
        data_shape,
        o["channels"],
        tuple(o["channel_mult"]),
        o["num_blocks"],
        tuple(o["attn_resolutions"]),
        o["dropout"],
        channels_per_head=o["channels_per_head"],
        **common,
    )
