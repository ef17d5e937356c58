"""Published diffusion models in diffjax: ``load_pretrained(path)`` → the diffusion and the model, ready for
``dj.sample`` and ``dj.solvers.learn``.

Formats (each read without torch; nothing is downloaded):

* a **diffusers** ``UNet2DModel`` folder — ``config.json``, ``diffusion_pytorch_model.safetensors``,
  ``scheduler_config.json`` (:mod:`.hf`);
* an **EDM** network pickle (``edm-cifar10-32x32-uncond-vp.pkl`` …), read by a restricted unpickler that runs no
  code from the file, or its conversion ``python -m diffjax.models.pretrained convert NET.pkl OUT`` → ``OUT.npz`` +
  ``OUT.json`` (:mod:`.edm`);
* a **score_sde** Flax checkpoint (msgpack) with the name of its config, e.g.
  ``load_pretrained("checkpoint_26", config="ve/cifar10_ncsnpp_continuous")`` (:mod:`.score_sde`).

Every file is checked completely (names, shapes, values, config fields) before the network is built; an error names
the file and the field. :class:`Pretrained` records the files' SHA-256 digests (``info["digest"]``), so caches of
samples can be tied to the model that made them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ...files import file_digest, save_npz_atomic, write_atomic
from ...prediction import Model
from ..precond import Preconditioned
from . import edm, hf
from .conditioning import DiscreteStep, EDMDenoiser, UnitIntervalVE
from .unpickle import UnsafePickleError

FORMATS = (
    "a diffusers folder (config.json + diffusion_pytorch_model.safetensors + scheduler_config.json)",
    "an EDM network pickle (.pkl)",
    "an EDM conversion (.json + .npz)",
    "a score_sde Flax checkpoint (msgpack) with config='<sde>/<name>'",
)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(graphdef, conditioning, state, x, c, labels):
    """The network (``conditioning`` None) or the EDM denoiser at ``(x, c)``, compiled once per network."""
    net = nnx.merge(graphdef, state)
    return net(x, c, labels) if conditioning is None else conditioning.denoise(net, labels, x, c)


@dataclasses.dataclass
class Pretrained:
    """A loaded published model: ``sde`` (the diffusion it samples with), ``net`` (the NNX network),
    ``conditioning`` (how ``(y, t)`` is fed to it, :mod:`.conditioning`), ``data_shape`` (``(H, W, C)``),
    ``num_classes`` (0: unconditional) and ``info`` (format, files and their digests, architecture)."""

    sde: Any
    net: Any
    conditioning: Any
    data_shape: tuple
    num_classes: int
    info: dict

    def check_labels(self, labels, batch: int | None = None):
        """``labels`` as int32 ``(B,)``, or None; ValueError when they do not fit the model."""
        if labels is None:
            if self.num_classes and isinstance(self.conditioning, DiscreteStep):
                raise ValueError(f"this model is class-conditional ({self.num_classes} classes): pass labels")
            return None
        if not self.num_classes:
            raise ValueError("this model is unconditional: it takes no labels")
        arr = np.asarray(labels)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"labels must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_classes):
            raise ValueError(f"labels must lie in 0…{self.num_classes - 1}, got values in [{arr.min()}, {arr.max()}]")
        if batch is not None and arr.shape[0] not in (1, batch):
            raise ValueError(f"{arr.shape[0]} labels for a batch of {batch}")
        return jnp.asarray(arr, jnp.int32)

    def model(self, labels=None) -> Model:
        """The :class:`~diffjax.prediction.Model` of :attr:`sde` (class ``labels`` for a conditional model; for EDM's
        conditional networks None is EDM's all-zero label)."""
        labels = self.check_labels(labels)
        return Model(
            self.sde, Preconditioned(self.sde, self.conditioning, self.net, labels), self.conditioning.prediction
        )

    def with_diffusion(self, sde) -> "Pretrained":
        """The same network sampled as a model of another scalar diffusion (EDM denoisers work on any: the
        network sees ``x/α`` at noise level ``σ/α``); other formats are tied to their diffusion."""
        from ...diffusions.base import ScalarDiffusion

        if not isinstance(self.conditioning, EDMDenoiser) or not isinstance(sde, ScalarDiffusion):
            raise ValueError(
                f"{self.info['format']} models are tied to their diffusion ({self.sde!r}); only EDM-style "
                "denoisers can be moved to another scalar diffusion"
            )
        return dataclasses.replace(self, sde=sde)

    def denoise(self, x, sigma, labels=None):
        """EDM's ``D(x; σ)`` on NHWC images (EDM-style models)."""
        if not isinstance(self.conditioning, EDMDenoiser):
            raise ValueError("denoise() is for EDM-style models; use model()")
        x = jnp.asarray(x, jnp.float32)
        labels = self.check_labels(labels, x.shape[0])
        sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32).reshape(-1), (x.shape[0],))
        return np.asarray(_apply(*_split(self.net, self.conditioning), x, sigma, labels))

    def network_output(self, x, c_noise, labels=None):
        """The network's raw output for NHWC inputs and its own noise input (a step index, σ, …)."""
        x = jnp.asarray(x, jnp.float32)
        labels = self.check_labels(labels, x.shape[0])
        c = jnp.broadcast_to(jnp.asarray(c_noise, jnp.float32).reshape(-1), (x.shape[0],))
        return np.asarray(_apply(*_split(self.net, None), x, c, labels))

    def __repr__(self):
        return (
            f"Pretrained({self.info['format']}, {self.info.get('architecture', '?')}, data {self.data_shape}, "
            f"classes {self.num_classes}, {self.sde!r})"
        )


def _split(net, conditioning):
    graphdef, state = nnx.split(net)
    return graphdef, conditioning, state


def _default_edm_diffusion(spec, dn):
    """EDM's sampling range: σ ∈ [max(0.002, σ_min), min(80, σ_max)] of the network, as EDM's generator uses."""
    from ...diffusions import EDM

    lo, hi = edm.sigma_range(spec, dn)
    sd = float(spec["precond"].get("sigma_data", 0.5))
    return EDM(sigma_min=max(0.002, lo), sigma_max=min(80.0, hi), sigma_data=sd)


def _from_edm(spec, arrays, files, dtype):
    dn = edm.denoiser(spec, arrays)
    net = edm.load(spec, arrays, dtype, where=files[0])
    o = spec["network"]
    shape = (o["img_resolution"], o["img_resolution"], spec["img_channels"])
    arch = {"SongUNet": "DDPM++/NCSN++ (SongUNet)", "DhariwalUNet": "ADM (DhariwalUNet)"}[o["class"]]
    info = {
        "format": "edm",
        "architecture": f"{arch}, {spec['source']['class']}",
        "spec": spec,
        "dropped": sorted({k.rsplit(".", 1)[0] for k in arrays if k.startswith("model.map_augment")}),
    }
    return Pretrained(_default_edm_diffusion(spec, dn), net, dn, shape, int(o["label_dim"]), _with_files(info, files))


def _with_files(info, files):
    digests = {os.path.basename(f): file_digest(f) for f in files}
    info["files"] = [os.path.abspath(f) for f in files]
    info["digests"] = digests
    info["digest"] = hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()
    return info


def _edm_pair(path):
    stem = path[:-5] if path.endswith(".json") else path[:-4]
    js, npz = stem + ".json", stem + ".npz"
    for p in (js, npz):
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"{p} is missing: an EDM conversion is the pair {os.path.basename(js)} + "
                f"{os.path.basename(npz)} written by `python -m diffjax.models.pretrained convert`"
            )
    try:
        with open(js) as f:
            spec = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{js} is not valid JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != "edm":
        raise ValueError(f'{js} is not an EDM conversion (no "format": "edm")')
    try:
        with np.load(npz) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{npz}: not a readable .npz ({e})") from None
    return spec, arrays, [js, npz]


def load_pretrained(
    path: str, *, config: str | None = None, diffusion: Any = None, dtype=None, **score_sde_options
) -> Pretrained:
    """Load a published model (module docstring) as a :class:`Pretrained`.

    Args:
      path: a diffusers folder, an EDM ``.pkl`` (or its ``.json``/``.npz`` conversion), a score_sde checkpoint.
      config: score_sde only: the config's name (``'ve/cifar10_ncsnpp_continuous'``; :data:`.score_sde.CONFIGS`).
      diffusion: sample with this scalar diffusion instead of the format's own (EDM denoisers only).
      dtype: compute dtype of EDM/score_sde networks (``jnp.bfloat16`` for mixed precision; weights stay float32).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist; expected {' or '.join(FORMATS)}")
    if config is not None or score_sde_options:
        from . import score_sde

        pm = score_sde.load(path, config, dtype=dtype, **score_sde_options)
    elif os.path.isdir(path):
        if not hf.is_folder(path):
            raise ValueError(
                f"{path} is a folder without config.json: not a diffusers model; expected {' or '.join(FORMATS)}"
            )
        net, sde, cond, shape, classes, files = hf.load_folder(path)
        arch = "UNet2DModel (diffusers)"
        info = _with_files(
            {"format": "diffusers", "architecture": arch}, [files["config"], files["weights"], files["scheduler"]]
        )
        pm = Pretrained(sde, net, cond, shape, classes, info)
    elif path.endswith(".pkl"):
        spec, arrays = edm.read_pickle(path)
        pm = _from_edm(spec, arrays, [path], dtype)
    elif path.endswith((".json", ".npz")):
        spec, arrays, files = _edm_pair(path)
        pm = _from_edm(spec, arrays, files, dtype)
    else:
        raise ValueError(f"{path}: unknown model format; expected {' or '.join(FORMATS)}")
    return pm.with_diffusion(diffusion) if diffusion is not None else pm


def convert(src: str, out: str) -> tuple[str, str]:
    """EDM pickle → ``out.npz`` (weights under EDM's names) + ``out.json`` (architecture and preconditioning),
    checked by building the network from them first."""
    spec, arrays = edm.read_pickle(src)
    edm.load(spec, arrays, where=src)  # every name and shape checked before anything is written
    spec["source"]["digest"] = file_digest(src)
    stem = out[:-4] if out.endswith((".npz", ".pkl")) else out[:-5] if out.endswith(".json") else out
    save_npz_atomic(stem + ".npz", **arrays)
    write_atomic(stem + ".json", json.dumps(spec, indent=1))
    return stem + ".npz", stem + ".json"


def _main(argv):
    if len(argv) != 3 or argv[0] != "convert":
        raise SystemExit(
            "usage: python -m diffjax.models.pretrained convert NETWORK.pkl OUT   (writes OUT.npz + OUT.json)"
        )
    try:
        npz, js = convert(argv[1], argv[2])
    except (OSError, ValueError, UnsafePickleError) as e:
        raise SystemExit(f"cannot convert {argv[1]}: {e}") from None
    print(f"wrote {npz} and {js}")


__all__ = [
    "Pretrained",
    "load_pretrained",
    "convert",
    "file_digest",
    "EDMDenoiser",
    "DiscreteStep",
    "UnitIntervalVE",
    "UnsafePickleError",
]

if __name__ == "__main__":
    _main(sys.argv[1:])
