"""score_sde's NCSN++ / DDPM++ checkpoints (Song et al. 2021, the JAX code): a Flax msgpack + the config's name.

The checkpoint is the training state written by ``flax.training.checkpoints`` (msgpack: plain data, no code); its
``params_ema`` (the evaluated weights; ``params`` or ``optimizer.target`` otherwise) are read with
``flax.serialization``. The config (:data:`CONFIGS`: every ``ncsnpp`` config of the score_sde repository) gives the
architecture, which is diffjax's :class:`~diffjax.models.UNet` (EDM re-implemented the same network as its
``SongUNet``): BigGAN residual blocks, ``progressive_input`` none / input_skip / residual → ``encoder`` standard /
skip / residual, ``progressive`` none / output_skip → ``decoder`` standard / skip, ``fir`` → the [1, 3, 3, 1] filter.
Flax names its modules by class and call order (``ResnetBlockBigGANpp_7``, ``AttnBlockpp_2``, ``Conv_0`` …);
:func:`rename_table` walks the network in the order score_sde's ``NCSNpp.__call__`` creates them.

The diffusion and the conditioning follow the config (data in [−1, 1] for diffjax):

* ``vpsde`` / ``subvpsde``, continuous: ``VP(0.1, 20)`` (sub-VP) and ε from ``net(y, 999 t)``;
* ``vpsde``, discrete: :class:`~diffjax.diffusions.DiscreteVP` (β linear ``β_min/N … β_max/N``) and the step index;
* ``vesde``, continuous: score_sde's data are in [0, 1] and its network centres them (``2x − 1``), embeds
  ``log σ_[0,1]`` and divides its output by ``σ_[0,1]``; in [−1, 1] that is ``VE(2σ_min, 2σ_max)`` with EDM's VE
  preconditioning ``D = y + σ F(y, ln(σ/2))`` (F: the network before the division).
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

from .conditioning import DiscreteStep, EDMDenoiser


def _c(
    sde,
    continuous,
    image_size,
    centered,
    embedding,
    nf,
    ch_mult,
    num_res_blocks,
    fir,
    progressive,
    progressive_input,
    scale_by_sigma,
    sigma_max,
    num_scales,
    dropout,
):
    return dict(
        sde=sde,
        continuous=continuous,
        image_size=image_size,
        centered=centered,
        embedding_type=embedding,
        nf=nf,
        ch_mult=ch_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=(16,),
        fir=fir,
        progressive=progressive,
        progressive_input=progressive_input,
        scale_by_sigma=scale_by_sigma,
        sigma_min=0.01,
        sigma_max=sigma_max,
        beta_min=0.1,
        beta_max=20.0,
        num_scales=num_scales,
        dropout=dropout,
        num_channels=3,
    )


# (sde, continuous, image size, centered, embedding, nf, ch_mult, blocks, fir, progressive, progressive_input,
#  scale_by_sigma, σ_max, N, dropout) of score_sde's ncsnpp configs; all use BigGAN blocks, attention at 16×16,
#  skip_rescale, progressive_combine 'sum', σ_min 0.01, β 0.1 → 20
CONFIGS = {
    "vp/cifar10_ddpmpp": _c(
        "vpsde", False, 32, True, "positional", 128, (1, 2, 2, 2), 4, False, "none", "none", False, 50.0, 1000, 0.1
    ),
    "vp/cifar10_ddpmpp_continuous": _c(
        "vpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 4, False, "none", "none", False, 50.0, 1000, 0.1
    ),
    "vp/cifar10_ddpmpp_deep_continuous": _c(
        "vpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 8, False, "none", "none", False, 50.0, 1000, 0.1
    ),
    "vp/cifar10_ncsnpp": _c(
        "vpsde", False, 32, True, "positional", 128, (1, 2, 2, 2), 4, True, "none", "residual", False, 50.0, 1000, 0.1
    ),
    "vp/cifar10_ncsnpp_continuous": _c(
        "vpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 4, True, "none", "residual", False, 50.0, 1000, 0.1
    ),
    "vp/cifar10_ncsnpp_deep_continuous": _c(
        "vpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 8, True, "none", "residual", False, 50.0, 1000, 0.1
    ),
    "subvp/cifar10_ddpmpp_continuous": _c(
        "subvpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 4, False, "none", "none", False, 50.0, 1000, 0.1
    ),
    "subvp/cifar10_ddpmpp_deep_continuous": _c(
        "subvpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 8, False, "none", "none", False, 50.0, 1000, 0.1
    ),
    "subvp/cifar10_ncsnpp_continuous": _c(
        "subvpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 4, True, "none", "residual", False, 50.0, 1000, 0.1
    ),
    "subvp/cifar10_ncsnpp_deep_continuous": _c(
        "subvpsde", True, 32, True, "positional", 128, (1, 2, 2, 2), 8, True, "none", "residual", False, 50.0, 1000, 0.1
    ),
    "ve/bedroom_ncsnpp_continuous": _c(
        "vesde",
        True,
        256,
        False,
        "fourier",
        128,
        (1, 1, 2, 2, 2, 2, 2),
        2,
        True,
        "output_skip",
        "input_skip",
        True,
        378.0,
        2000,
        0.0,
    ),
    "ve/celeba_ncsnpp": _c(
        "vesde", False, 64, False, "positional", 128, (1, 2, 2, 2), 4, True, "none", "residual", True, 90.0, 1000, 0.1
    ),
    "ve/celebahq_256_ncsnpp_continuous": _c(
        "vesde",
        True,
        256,
        False,
        "fourier",
        128,
        (1, 1, 2, 2, 2, 2, 2),
        2,
        True,
        "output_skip",
        "input_skip",
        True,
        348.0,
        2000,
        0.0,
    ),
    "ve/celebahq_ncsnpp_continuous": _c(
        "vesde",
        True,
        1024,
        False,
        "fourier",
        16,
        (1, 2, 4, 8, 16, 32, 32, 32),
        1,
        True,
        "output_skip",
        "input_skip",
        True,
        1348.0,
        2000,
        0.0,
    ),
    "ve/church_ncsnpp_continuous": _c(
        "vesde",
        True,
        256,
        False,
        "fourier",
        128,
        (1, 1, 2, 2, 2, 2, 2),
        2,
        True,
        "output_skip",
        "input_skip",
        True,
        380.0,
        2000,
        0.0,
    ),
    "ve/cifar10_ncsnpp": _c(
        "vesde", False, 32, False, "positional", 128, (1, 2, 2, 2), 4, True, "none", "residual", True, 50.0, 1000, 0.1
    ),
    "ve/cifar10_ncsnpp_continuous": _c(
        "vesde", True, 32, False, "fourier", 128, (1, 2, 2, 2), 4, True, "none", "residual", True, 50.0, 1000, 0.1
    ),
    "ve/cifar10_ncsnpp_deep_continuous": _c(
        "vesde", True, 32, False, "fourier", 128, (1, 2, 2, 2), 8, True, "none", "residual", True, 50.0, 1000, 0.1
    ),
    "ve/ffhq_256_ncsnpp_continuous": _c(
        "vesde",
        True,
        256,
        False,
        "fourier",
        128,
        (1, 1, 2, 2, 2, 2, 2),
        2,
        True,
        "output_skip",
        "input_skip",
        True,
        348.0,
        2000,
        0.0,
    ),
    "ve/ffhq_ncsnpp_continuous": _c(
        "vesde",
        True,
        1024,
        False,
        "fourier",
        16,
        (1, 2, 4, 8, 16, 32, 32, 32),
        1,
        True,
        "output_skip",
        "input_skip",
        True,
        1348.0,
        2000,
        0.0,
    ),
}
OVERRIDABLE = ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout")
ENCODERS = {"none": "standard", "input_skip": "skip", "residual": "residual"}
DECODERS = {"none": "standard", "output_skip": "skip"}


def config_of(name: str, overrides: dict | None = None, image_size: int | None = None) -> dict:
    """The config ``name`` (:data:`CONFIGS`, with model ``overrides`` of :data:`OVERRIDABLE` and the image size).

    ``name`` may also be a ``.json`` file describing a variant of a known config (your own training of score_sde's
    code with other sizes): ``{"base": "ve/cifar10_ncsnpp_continuous", "image_size": 64, "nf": 64, …}`` with
    keys among ``base``, ``image_size`` and :data:`OVERRIDABLE`."""
    if str(name).endswith(".json"):
        import json

        try:
            with open(name) as f:
                spec = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"score_sde config file {name}: {e}") from None
        if not isinstance(spec, dict) or "base" not in spec:
            raise ValueError(f"score_sde config file {name}: expected an object with 'base' (a known config's name)")
        extra = sorted(set(spec) - {"base", "image_size"} - set(OVERRIDABLE))
        if extra:
            raise ValueError(
                f"score_sde config file {name}: unknown key(s) {extra}; accepted: base, image_size, "
                f"{', '.join(OVERRIDABLE)}"
            )
        over = {k: v for k, v in spec.items() if k in OVERRIDABLE} | dict(overrides or {})
        return config_of(spec["base"], over, image_size or spec.get("image_size"))
    name = re.sub(r"^configs/|\.py$", "", str(name))
    if name not in CONFIGS:
        import difflib

        close = difflib.get_close_matches(name, list(CONFIGS), 1)
        raise ValueError(
            f"unknown score_sde config {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
            f"known (the repository's ncsnpp configs): {sorted(CONFIGS)}"
        )
    cfg = dict(CONFIGS[name], name=name)
    for k, v in (overrides or {}).items():
        if k not in OVERRIDABLE:
            raise ValueError(f"score_sde override {k!r} is not supported; accepted: {OVERRIDABLE}")
        cfg[k] = tuple(v) if isinstance(v, list) else v
    if image_size is not None:
        cfg["image_size"] = int(image_size)
    if cfg["sde"] == "vesde" and not cfg["continuous"]:
        raise ValueError(
            f"{name}: discrete-time VE models (noise-level index input) are not supported; the continuous "
            "VE configs are"
        )
    if not cfg["fir"] and cfg["progressive_input"] == "residual":
        raise ValueError(f"{name}: a residual input path without FIR filtering (a SAME strided conv) is not supported")
    if cfg["centered"] == (cfg["sde"] == "vesde") or cfg["scale_by_sigma"] != (cfg["sde"] == "vesde"):
        raise ValueError(f"{name}: expected centered data and no σ scaling for VP, [0, 1] data and σ scaling for VE")
    return cfg


def network(cfg: dict, dtype=None):
    """diffjax's UNet for a score_sde config (shape-only parameters)."""
    import jax.numpy as jnp
    from flax import nnx

    from ..unet import UNet

    fourier = cfg["embedding_type"] == "fourier"
    shape = (cfg["image_size"], cfg["image_size"], cfg["num_channels"])
    return nnx.eval_shape(
        lambda: UNet(
            shape,
            cfg["nf"],
            tuple(cfg["ch_mult"]),
            cfg["num_res_blocks"],
            tuple(cfg["attn_resolutions"]),
            cfg["dropout"],
            cfg["embedding_type"],
            dtype=dtype or jnp.float32,
            noise_mult=2 if fourier else 1,
            fourier_scale=16.0,
            encoder=ENCODERS[cfg["progressive_input"]],
            decoder=DECODERS[cfg["progressive"]],
            resample_filter=(1, 3, 3, 1) if cfg["fir"] else (1, 1),
            fourier_premultiplied=False,
            rngs=nnx.Rngs(0),
        )
    )


def rename_table(cfg: dict) -> dict[str, tuple[str, str]]:
    """score_sde's top-level module names → ``(kind, diffjax path)``, in the order ``NCSNpp.__call__`` makes them."""
    count = collections.Counter()

    def nxt(cls):
        count[cls] += 1
        return f"{cls}_{count[cls] - 1}"

    table = {}
    if cfg["embedding_type"] == "fourier":
        table[nxt("GaussianFourierProjection")] = ("fourier", "embed.fourier")
    table[nxt("Dense")] = ("dense0", "embed.lin0")
    table[nxt("Dense")] = ("dense", "embed.lin1")
    table[nxt("Conv")] = ("conv", "conv_in")
    levels, res0 = len(cfg["ch_mult"]), cfg["image_size"]
    enc = aux = 0
    for level in range(levels):
        for _ in range(cfg["num_res_blocks"]):
            table[nxt("ResnetBlockBigGANpp")] = ("resblock", f"enc.{enc}")
            if (res0 >> level) in cfg["attn_resolutions"]:
                table[nxt("AttnBlockpp")] = ("attention", f"enc.{enc}")
            enc += 1
        if level != levels - 1:
            table[nxt("ResnetBlockBigGANpp")] = ("resblock", f"enc.{enc}")
            enc += 1
            if cfg["progressive_input"] == "input_skip":
                nxt("Downsample")  # the filter alone: no parameters
                table[nxt("Combine")] = ("combine", f"enc_aux.{aux}")
                aux += 1
            elif cfg["progressive_input"] == "residual":
                table[nxt("Downsample")] = ("downsample", f"enc_aux.{aux}")
                aux += 1
    table[nxt("ResnetBlockBigGANpp")] = ("resblock", "mid.0")
    table[nxt("AttnBlockpp")] = ("attention", "mid.0")
    table[nxt("ResnetBlockBigGANpp")] = ("resblock", "mid.1")
    dec = 0
    for level in reversed(range(levels)):
        for _ in range(cfg["num_res_blocks"] + 1):
            table[nxt("ResnetBlockBigGANpp")] = ("resblock", f"dec.{dec}")
            dec += 1
        if (res0 >> level) in cfg["attn_resolutions"]:
            table[nxt("AttnBlockpp")] = ("attention", f"dec.{dec - 1}")
        if cfg["progressive"] == "output_skip":
            if level != levels - 1:
                nxt("Upsample")  # the filter alone
            j = levels - 1 - level
            table[nxt("GroupNorm")] = ("norm", "norm_out" if level == 0 else f"dec_aux_norm.{j}")
            table[nxt("Conv")] = ("conv", "conv_out" if level == 0 else f"dec_aux_conv.{j}")
        if level != 0:
            table[nxt("ResnetBlockBigGANpp")] = ("resblock", f"dec.{dec}")
            dec += 1
    if cfg["progressive"] != "output_skip":
        table[nxt("GroupNorm")] = ("norm", "norm_out")
        table[nxt("Conv")] = ("conv", "conv_out")
    return table


def _swap_halves(w):
    half = w.shape[0] // 2  # score_sde's features are [sin, cos]; diffjax's [cos, sin]
    return np.concatenate([w[half:], w[:half]], axis=0)


def port_arrays(cfg: dict, params: dict, where: str) -> dict[str, np.ndarray]:
    """score_sde's parameter tree → diffjax paths (Flax layouts equal diffjax's; attention q, k, v stacked)."""
    out = {}
    table = rename_table(cfg)
    unknown = sorted(set(params) - set(table))
    if unknown:
        raise ValueError(
            f"{where}: module(s) {unknown[:4]} are not in config {cfg['name']}'s network; is it the "
            "checkpoint of another config?"
        )
    missing = sorted(set(table) - set(params))
    if missing:
        raise ValueError(f"{where}: module(s) {missing[:4]} of config {cfg['name']} are missing from the checkpoint")

    def get(tree, *keys):
        for k in keys:
            if not isinstance(tree, dict) or k not in tree:
                raise ValueError(f"{where}: parameter {'/'.join(keys)} missing under a module of the checkpoint")
            tree = tree[k]
        return np.asarray(tree)

    for name, (kind, dst) in table.items():
        p = params[name]
        if kind == "fourier":
            out[f"{dst}.freqs"] = get(p, "W")
        elif kind in ("dense", "dense0"):
            k = get(p, "kernel")
            out[f"{dst}.kernel"], out[f"{dst}.bias"] = (_swap_halves(k) if kind == "dense0" else k), get(p, "bias")
        elif kind in ("conv", "norm"):
            a, b = ("kernel", "bias") if kind == "conv" else ("scale", "bias")
            out[f"{dst}.{a}"], out[f"{dst}.bias"] = get(p, a), get(p, b)
        elif kind == "combine":
            out[f"{dst}.kernel"], out[f"{dst}.bias"] = get(p, "Conv_0", "kernel"), get(p, "Conv_0", "bias")
        elif kind == "downsample":
            out[f"{dst}.kernel"], out[f"{dst}.bias"] = get(p, "Conv2d_0", "weight"), get(p, "Conv2d_0", "bias")
        elif kind == "resblock":
            for src, ours, leaves in (
                ("GroupNorm_0", "norm0", ("scale", "bias")),
                ("Conv_0", "conv0", ("kernel", "bias")),
                ("Dense_0", "affine", ("kernel", "bias")),
                ("GroupNorm_1", "norm1", ("scale", "bias")),
                ("Conv_1", "conv1", ("kernel", "bias")),
                ("Conv_2", "skip", ("kernel", "bias")),
            ):
                if src == "Conv_2" and src not in p:
                    continue
                for leaf in leaves:
                    out[f"{dst}.{ours}.{leaf}"] = get(p, src, leaf)
        elif kind == "attention":
            out[f"{dst}.norm2.scale"], out[f"{dst}.norm2.bias"] = (
                get(p, "GroupNorm_0", "scale"),
                get(p, "GroupNorm_0", "bias"),
            )
            w = np.concatenate([get(p, f"NIN_{i}", "W") for i in range(3)], axis=1)
            out[f"{dst}.qkv.kernel"] = w[None, None]
            out[f"{dst}.qkv.bias"] = np.concatenate([get(p, f"NIN_{i}", "b") for i in range(3)])
            out[f"{dst}.proj.kernel"], out[f"{dst}.proj.bias"] = get(p, "NIN_3", "W")[None, None], get(p, "NIN_3", "b")
    return out


def read_params(path: str) -> dict:
    """The EMA parameters of a score_sde checkpoint (a file, or a folder of ``checkpoint_N`` files: the latest)."""
    from flax import serialization

    if os.path.isdir(path):
        steps = [(int(m.group(1)), f) for f in os.listdir(path) if (m := re.fullmatch(r"checkpoint_(\d+)", f))]
        if not steps:
            raise FileNotFoundError(f"{path}: no checkpoint_<N> file in this folder")
        path = os.path.join(path, max(steps)[1])
    try:
        with open(path, "rb") as f:
            state = serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack raises its own exception types on foreign or truncated data
        raise ValueError(f"{path}: not a Flax msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a training state (a dict), got {type(state).__name__}")
    for keys in (("params_ema",), ("params",), ("optimizer", "target")):
        tree = state
        for k in keys:
            tree = tree.get(k) if isinstance(tree, dict) else None
        if isinstance(tree, dict) and tree:
            return tree, path
    raise ValueError(f"{path}: no params_ema, params or optimizer.target in the checkpoint (keys {sorted(state)[:8]})")


def diffusion_and_conditioning(cfg: dict):
    """The diffusion of a config and how its network is fed (module docstring)."""
    from ...diffusions import VE, VP, DiscreteVP
    from ...diffusions.recipes import EpsRecipe

    if cfg["sde"] == "vesde":
        return VE(sigma_min=2 * cfg["sigma_min"], sigma_max=2 * cfg["sigma_max"]), EDMDenoiser("ve")
    n = int(cfg["num_scales"])
    if not cfg["continuous"]:
        return DiscreteVP.from_schedule("linear", cfg["beta_min"] / n, cfg["beta_max"] / n, n), DiscreteStep("eps")
    return VP(beta_min=cfg["beta_min"], beta_max=cfg["beta_max"], sub_vp=cfg["sde"] == "subvpsde"), EpsRecipe("eps")


def load(path: str, config: str, dtype=None, overrides: dict | None = None, image_size: int | None = None):
    """A :class:`~diffjax.models.pretrained.Pretrained` from a score_sde checkpoint and its config's name."""
    from ..weights import assign
    from . import Pretrained, _with_files

    if not config:
        raise ValueError(
            f"{path}: a score_sde checkpoint needs its config's name, e.g. config='ve/cifar10_ncsnpp_continuous'"
        )
    cfg = config_of(config, overrides, image_size)
    params, file = read_params(path)
    net = assign(network(cfg, dtype), port_arrays(cfg, params, file), file)
    sde, cond = diffusion_and_conditioning(cfg)
    info = _with_files({"format": "score_sde", "architecture": f"NCSN++ family ({cfg['name']})", "config": cfg}, [file])
    return Pretrained(sde, net, cond, (cfg["image_size"],) * 2 + (cfg["num_channels"],), 0, info)


def original_output(pm, x, time_cond):
    """What score_sde's ``NCSNpp`` returns for its own inputs (data in [0, 1] for VE; ``time_cond`` = σ_[0,1] for
    VE, ``999 t`` or the step for VP) — for checking the port against the original."""
    import jax.numpy as jnp

    cfg = pm.info["config"]
    x, c = jnp.asarray(x, jnp.float32), jnp.asarray(time_cond, jnp.float32)
    if cfg["sde"] == "vesde":
        h = pm.net(2 * x - 1, jnp.log(c))
        return np.asarray(h / c[:, None, None, None])
    return np.asarray(pm.net(x, c))
