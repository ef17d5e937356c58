"""EDM's network files (Karras et al. 2022): the pickle read safely, converted to ``.npz`` + ``.json``, loaded into NNX.

An EDM file is a pickle of ``dict(ema=<precond>, …)`` whose ``ema`` is one of ``VPPrecond``, ``VEPrecond``,
``iDDPMPrecond``, ``EDMPrecond`` around a ``SongUNet`` (DDPM++ / NCSN++: :class:`~diffjax.models.UNet`) or a
``DhariwalUNet`` (ADM: :class:`~diffjax.models.adm.ADMUNet`). :func:`read_pickle` reads it with the restricted
unpickler (:mod:`.unpickle`: no code from the file runs) and returns ``(spec, arrays)``: the architecture and
preconditioning as plain JSON data and the weights under EDM's names. :func:`build` makes the NNX network and the
:class:`~.conditioning.EDMDenoiser` from them. Names map as follows (EDM → diffjax): ``map_layer0/1`` → the noise
MLP, ``enc.*_conv`` → ``conv_in``, the encoder's and decoder's blocks in order → ``enc``/``mid``/``dec``,
NCSN++'s ``aux_*`` convs → ``enc_aux``/``dec_aux_*``, the last ``aux_norm/aux_conv`` (or ``out_norm/out_conv``) →
``norm_out/conv_out``. Three layouts differ and are converted exactly: EDM's attention ``qkv`` interleaves
(head, channel, q/k/v) where diffjax stacks q, k, v; DDPM++'s noise features are ``[sin, cos]`` where diffjax's are
``[cos, sin]``; class labels are one-hot vectors through a linear map where diffjax has an embedding table (row c =
the map's column c scaled as EDM scales the one-hot input, plus its bias; the extra "no label" row = bias alone, as
EDM's all-zero label). ``map_augment`` (the augmentation conditioning, unused when sampling) is dropped.
"""

from __future__ import annotations

import math
import re

import numpy as np
from flax import nnx

from ..adm import ADMUNet
from ..unet import UNet
from ..weights import load_torch_state
from . import unpickle
from .conditioning import EDMDenoiser

PRECONDS = {"VPPrecond": "vp", "VEPrecond": "ve", "iDDPMPrecond": "iddpm", "EDMPrecond": "edm"}
PRECOND_DEFAULTS = {
    "vp": dict(beta_d=19.9, beta_min=0.1, M=1000, epsilon_t=1e-5),
    "ve": dict(sigma_min=0.02, sigma_max=100.0),
    "iddpm": dict(C_1=0.001, C_2=0.008, M=1000),
    "edm": dict(sigma_min=0.0, sigma_max=math.inf, sigma_data=0.5),
}
SONG_DEFAULTS = dict(
    label_dim=0,
    augment_dim=0,
    model_channels=128,
    channel_mult=[1, 2, 2, 2],
    channel_mult_emb=4,
    num_blocks=4,
    attn_resolutions=[16],
    dropout=0.10,
    label_dropout=0,
    embedding_type="positional",
    channel_mult_noise=1,
    encoder_type="standard",
    decoder_type="standard",
    resample_filter=[1, 1],
)
ADM_DEFAULTS = dict(
    label_dim=0,
    augment_dim=0,
    model_channels=192,
    channel_mult=[1, 2, 3, 4],
    channel_mult_emb=4,
    num_blocks=3,
    attn_resolutions=[32, 16, 8],
    dropout=0.10,
    label_dropout=0,
)
COMMON = ("img_resolution", "in_channels", "out_channels")


def _fail(where, msg):
    raise ValueError(f"{where}: {msg}")


def read_pickle(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(spec, arrays)`` of an EDM network pickle (module docstring); ValueError with the reason otherwise."""
    data = unpickle.load(path)
    if not isinstance(data, dict) or "ema" not in data:
        _fail(
            path,
            f"expected EDM's dict with an 'ema' network, got {type(data).__name__}"
            + (f" with keys {sorted(map(str, data))}" if isinstance(data, dict) else ""),
        )
    ema = data["ema"]
    if not isinstance(ema, unpickle.Persistent) or ema.class_name not in PRECONDS:
        _fail(path, f"'ema' is {getattr(ema, 'class_name', type(ema).__name__)}; supported: {sorted(PRECONDS)}")
    inner = ema.modules.get("model")
    if not isinstance(inner, unpickle.Persistent):
        _fail(path, f"{ema.class_name} holds no 'model' network")
    arch = inner.class_name
    if arch not in ("SongUNet", "DhariwalUNet"):
        _fail(path, f"network {arch!r} is not supported; supported: SongUNet (DDPM++/NCSN++), DhariwalUNet (ADM)")
    kind = PRECONDS[ema.class_name]
    pk = ema.init_kwargs
    precond = {k: pk.get(k, v) for k, v in PRECOND_DEFAULTS[kind].items()}
    if pk.get("use_fp16"):
        precond["use_fp16"] = True  # recorded; diffjax runs float32 unless asked for bfloat16
    defaults = SONG_DEFAULTS if arch == "SongUNet" else ADM_DEFAULTS
    mk = inner.init_kwargs
    unknown = sorted(k for k in mk if k not in defaults and k not in COMMON)
    if unknown:
        _fail(path, f"{arch} argument(s) {unknown} are not known to this converter; known: {sorted(defaults)}")
    options = {k: mk.get(k, v) for k, v in defaults.items()}
    options.update({k: mk[k] for k in COMMON if k in mk})
    if options["channel_mult_emb"] != 4:
        _fail(path, f"channel_mult_emb = {options['channel_mult_emb']} is not supported (diffjax's networks use 4)")
    if arch == "DhariwalUNet":
        options["channels_per_head"] = _channels_per_head(inner, path)
    arrays = {k: np.asarray(v) for k, v in ema.arrays().items()}
    spec = {
        "format": "edm",
        "precond": {"kind": kind, **precond},
        "network": {"class": arch, **options},
        "img_channels": int(pk.get("img_channels", options["in_channels"])),
        "source": {"class": ema.class_name, "file": str(path)},
    }
    return _jsonable(spec), arrays


def _channels_per_head(inner, where) -> int:
    """ADM's channels per attention head, read from the blocks' saved ``num_heads`` (one value for all)."""
    seen = set()
    for group in ("enc", "dec"):
        container = inner.modules.get(group)
        for block in container.modules.values() if container is not None else []:
            heads = block.attribute("num_heads", 0) if isinstance(block, unpickle.Persistent) else 0
            if heads:
                seen.add(int(block.attribute("out_channels")) // int(heads))
    if len(seen) > 1:
        _fail(where, f"attention blocks use different head sizes {sorted(seen)}; not supported")
    return seen.pop() if seen else 64


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")
    return x


def _float(v) -> float:
    return math.inf if v == "inf" else float(v)


def iddpm_levels(C_1: float, C_2: float, M: int) -> np.ndarray:
    """iDDPM's noise levels ``u_M = 0``, ``u_{j−1} = √((u_j² + 1)/max(ᾱ_{j−1}/ᾱ_j, C_1) − 1)`` with
    ``ᾱ_j = sin²(π j/(2M(C_2 + 1)))`` (float32 arithmetic, as the original)."""
    u = np.zeros(M + 1, np.float32)
    abar = lambda j: np.float32(np.sin(0.5 * np.pi * j / M / (C_2 + 1)) ** 2)
    for j in range(M, 0, -1):
        u[j - 1] = np.sqrt((u[j] ** 2 + 1) / max(abar(j - 1) / abar(j), np.float32(C_1)) - 1)
    return u


def denoiser(spec: dict, arrays: dict | None = None) -> EDMDenoiser:
    """The :class:`~.conditioning.EDMDenoiser` of a spec (iDDPM's levels from the file when present)."""
    p = spec["precond"]
    kind = p["kind"]
    if kind == "vp":
        return EDMDenoiser("vp", beta_d=float(p["beta_d"]), beta_min=float(p["beta_min"]), M=int(p["M"]))
    if kind == "ve":
        return EDMDenoiser("ve")
    if kind == "edm":
        return EDMDenoiser("edm", sigma_data=float(p["sigma_data"]))
    u = arrays["u"] if arrays is not None and "u" in arrays else iddpm_levels(p["C_1"], p["C_2"], int(p["M"]))
    return EDMDenoiser(
        "iddpm", M=int(p["M"]), u=tuple(float(v) for v in np.asarray(u, np.float64)), channels=int(spec["img_channels"])
    )


def sigma_range(spec: dict, dn: EDMDenoiser) -> tuple[float, float]:
    """The noise levels the network supports (the preconditioning's ``sigma_min/max``)."""
    p = spec["precond"]
    if p["kind"] == "vp":
        sig = lambda t: math.sqrt(math.expm1(0.5 * p["beta_d"] * t**2 + p["beta_min"] * t))
        return sig(p["epsilon_t"]), sig(1.0)
    if p["kind"] == "iddpm":
        return float(dn.u[int(p["M"]) - 1]), float(dn.u[0])
    return _float(p["sigma_min"]), _float(p["sigma_max"])


def network(spec: dict, dtype=None, abstract: bool = True):
    """The NNX network of a spec (shape-only parameters when ``abstract``: fill them with :func:`load`)."""
    import jax.numpy as jnp

    o = spec["network"]
    img = int(spec["img_channels"])
    shape = (o["img_resolution"], o["img_resolution"], o["in_channels"])
    common = dict(num_classes=int(o["label_dim"]), out_mult=int(o["out_channels"]) // img, dtype=dtype or jnp.float32)
    if o["in_channels"] != img or o["out_channels"] % img:
        _fail(spec["source"]["file"], f"channels in/out {o['in_channels']}/{o['out_channels']} vs image channels {img}")
    if o["class"] == "SongUNet":
        make = lambda: UNet(
            shape,
            o["model_channels"],
            tuple(o["channel_mult"]),
            o["num_blocks"],
            tuple(o["attn_resolutions"]),
            o["dropout"],
            o["embedding_type"],
            noise_mult=o["channel_mult_noise"],
            encoder=o["encoder_type"],
            decoder=o["decoder_type"],
            resample_filter=tuple(o["resample_filter"]),
            rngs=nnx.Rngs(0),
            **common,
        )
    else:
        make = lambda: ADMUNet(
            shape,
            o["model_channels"],
            tuple(o["channel_mult"]),
            o["num_blocks"],
            tuple(o["attn_resolutions"]),
            o["dropout"],
            channels_per_head=o["channels_per_head"],
            rngs=nnx.Rngs(0),
            **common,
        )
    return nnx.eval_shape(make) if abstract else make()


_ENC_RANK = {"conv": 0, "down": 0, "aux_down": 1, "aux_skip": 2, "aux_residual": 2, "block": 3}
_DEC_RANK = {"in0": 0, "in1": 1, "up": 0, "block": 2, "aux_up": 3, "aux_norm": 4, "aux_conv": 5}


def _parse(name: str):
    m = re.fullmatch(r"(\d+)x(\d+)_([a-z_]+?)(\d*)", name)
    if not m:
        raise ValueError(f"unexpected EDM module name {name!r}")
    kind = m.group(3) + (m.group(4) if m.group(3) == "in" else "")
    return int(m.group(1)), kind, int(m.group(4) or 0) if m.group(3) != "in" else 0


def rename_table(spec: dict, arrays: dict) -> dict[str, str | None]:
    """EDM module path → diffjax module path (None: not used by the port)."""
    o = spec["network"]
    res0 = int(o["img_resolution"])
    table: dict[str, str | None] = {
        "model.map_augment": None,
        "model.map_noise": "embed.fourier",
        "model.map_layer0": "embed.lin0" if o["class"] == "SongUNet" else "map_layer0",
        "model.map_layer1": "embed.lin1" if o["class"] == "SongUNet" else "map_layer1",
        "model.out_norm": "norm_out",
        "model.out_conv": "conv_out",
    }
    for group, rank in (("enc", _ENC_RANK), ("dec", _DEC_RANK)):
        names = {k.split(".")[2] for k in arrays if k.startswith(f"model.{group}.")}
        order = sorted(
            names, key=lambda n: (((-1) if group == "enc" else 1) * _parse(n)[0], rank[_parse(n)[1]], _parse(n)[2])
        )
        k = aux = 0
        for n in order:
            res, kind, _ = _parse(n)
            src = f"model.{group}.{n}"
            if kind == "conv":
                table[src] = "conv_in"
            elif kind in ("aux_skip", "aux_residual"):
                table[src], aux = f"enc_aux.{aux}", aux + 1
            elif kind in ("in0", "in1"):
                table[src] = f"mid.{int(kind[-1])}"
            elif kind in ("aux_norm", "aux_conv"):
                leaf = "norm" if kind == "aux_norm" else "conv"
                level = int(round(math.log2(res0 // res)))
                top = len(o["channel_mult"]) - 1
                table[src] = f"{leaf}_out" if level == 0 else f"dec_aux_{leaf}.{top - level}"
            elif kind in ("aux_down", "aux_up"):
                table[src] = None
            else:
                table[src], k = f"{group}.{k}", k + 1
    return table


def to_port_layout(spec: dict, arrays: dict) -> dict[str, np.ndarray]:
    """EDM-named arrays in the layouts of the port (qkv stacking, [cos, sin] features, label embeddings)."""
    o = spec["network"]
    out = {}
    for key, v in arrays.items():
        if key == "u" or key.endswith("resample_filter") or key.startswith("model.map_augment"):
            continue
        v = np.asarray(v, np.float32)
        if key.endswith(("qkv.weight", "qkv.bias")):
            c3 = v.shape[0]
            c = c3 // 3
            heads = 1 if o["class"] == "SongUNet" else max(c // o["channels_per_head"], 1)
            v = v.reshape((heads, c // heads, 3) + v.shape[1:]).transpose((2, 0, 1) + tuple(range(3, v.ndim + 2)))
            v = v.reshape((c3,) + v.shape[3:])
        elif key == "model.map_layer0.weight" and o["class"] == "SongUNet":
            half = v.shape[1] // 2
            v = np.concatenate([v[:, half:], v[:, :half]], axis=1)  # EDM feeds [sin, cos]
        out[key] = v
    label = "model.map_label"
    if f"{label}.weight" in out:
        w = out.pop(f"{label}.weight")  # (out, L)
        n = w.shape[1]
        if o["class"] == "SongUNet":
            b = out.pop(f"{label}.bias")
            table = np.concatenate([math.sqrt(n) * w.T + b, b[None]], axis=0)  # EDM scales the one-hot by √L
            half = table.shape[1] // 2  # added to the noise features: EDM's [sin, cos] order -> diffjax's [cos, sin]
            out["model.embed.label.weight"] = np.concatenate([table[:, half:], table[:, :half]], axis=1)
        else:
            out["model.label.weight"] = np.concatenate([w.T, np.zeros((1, w.shape[0]), np.float32)], axis=0)
    return out


def load(spec: dict, arrays: dict, dtype=None, where: str = "EDM network"):
    """The NNX network of ``spec`` holding ``arrays`` (EDM names), checked completely first."""
    net = network(spec, dtype)
    table = rename_table(spec, arrays)
    table["model.embed.label"] = "embed.label"
    table["model.label"] = "label"

    def rename(module):
        if module in table:
            return table[module]
        for prefix in sorted(table, key=len, reverse=True):  # a block's submodule: norm0, conv0, qkv, …
            if module.startswith(prefix + ".") and prefix.count(".") >= 2:
                dst = table[prefix]
                return None if dst is None else dst + module[len(prefix) :]
        raise ValueError(f"{where}: unexpected module {module!r} in the checkpoint")

    return load_torch_state(net, to_port_layout(spec, arrays), rename, where)
