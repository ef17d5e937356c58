"""A diffusers model folder (``UNet2DModel``): weights read with safetensors' NumPy API, the scheduler turned into
a diffjax diffusion. No torch.

A folder holds ``config.json`` (the architecture, :mod:`diffjax.models.diffusers_unet`),
``diffusion_pytorch_model.safetensors`` (the weights; the older attention names ``query/key/value/proj_attn`` are
accepted for ``to_q/to_k/to_v/to_out.0``) and ``scheduler_config.json`` (or ``scheduler/scheduler_config.json``
beside a ``unet/`` folder, the pipeline layout). The scheduler decides the diffusion and how the network is fed:

* a DDPM-family scheduler (``DDPMScheduler``, ``DDIMScheduler``, ``PNDMScheduler``, ``DPMSolverMultistepScheduler``,
  ``EulerDiscreteScheduler``, …): :class:`~diffjax.diffusions.DiscreteVP` from ``beta_schedule`` (``linear``,
  ``scaled_linear``, ``squaredcos_cap_v2``) or ``trained_betas``, ``beta_start/beta_end``, ``num_train_timesteps``;
  the network takes the step index ``N·t − 1`` and predicts ``prediction_type`` (``epsilon`` → ε, ``v_prediction``
  → v, ``sample`` → x0);
* ``ScoreSdeVeScheduler``: :class:`~diffjax.diffusions.VE` on data in [−1, 1] with ``σ = 2σ_[0,1]`` (the pipeline's
  data are in [0, 1]); the network, fed σ in [0, 1] space, returns that space's score.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..diffusers_unet import DiffusersUNet2D, check_config
from ..weights import load_torch_state
from .conditioning import DiscreteStep, UnitIntervalVE

WEIGHTS = ("diffusion_pytorch_model.safetensors", "model.safetensors")
DISCRETE = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
)
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out"}


def is_folder(path: str) -> bool:
    """Whether ``path`` looks like a diffusers model (or pipeline) folder."""
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "config.json")) or os.path.isdir(os.path.join(path, "unet"))
    )


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing (a diffusers model folder needs config.json, the safetensors "
            "weights and scheduler_config.json)"
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def files(folder: str) -> dict[str, str]:
    """The folder's ``config``, ``weights`` and ``scheduler`` paths (pipeline layout: ``unet/`` + ``scheduler/``)."""
    unet = os.path.join(folder, "unet") if os.path.isdir(os.path.join(folder, "unet")) else folder
    sched = [
        os.path.join(folder, "scheduler_config.json"),
        os.path.join(folder, "scheduler", "scheduler_config.json"),
        os.path.join(unet, "scheduler_config.json"),
    ]
    weights = [os.path.join(unet, w) for w in WEIGHTS]
    found = next((w for w in weights if os.path.exists(w)), None)
    if found is None:
        bins = [
            b for b in ("diffusion_pytorch_model.bin", "pytorch_model.bin") if os.path.exists(os.path.join(unet, b))
        ]
        hint = (
            (
                f" It has {bins[0]}, a torch pickle: diffjax does not unpickle torch files; convert once with torch "
                "(UNet2DModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True))."
            )
            if bins
            else ""
        )
        raise FileNotFoundError(f"{unet}: no weights file ({' or '.join(WEIGHTS)}).{hint}")
    return {
        "config": os.path.join(unet, "config.json"),
        "weights": found,
        "scheduler": next((s for s in sched if os.path.exists(s)), sched[0]),
    }


def diffusion_of(scheduler: dict, where: str):
    """``(diffusion, conditioning)`` of a scheduler config (module docstring)."""
    from ...diffusions import VE, DiscreteVP

    name = scheduler.get("_class_name", "DDPMScheduler")
    if name == "ScoreSdeVeScheduler":
        lo, hi = float(scheduler.get("sigma_min", 0.01)), float(scheduler.get("sigma_max", 1348.0))
        eps = float(scheduler.get("sampling_eps", 1e-5))
        return VE(sigma_min=2 * lo, sigma_max=2 * hi, t_min=eps, t_eps=eps), UnitIntervalVE()
    if name not in DISCRETE:
        raise ValueError(
            f"{where}: scheduler {name!r} is not supported; supported: ScoreSdeVeScheduler and the "
            f"DDPM-family schedulers {list(DISCRETE)}"
        )
    if scheduler.get("rescale_betas_zero_snr"):
        raise ValueError(f"{where}: rescale_betas_zero_snr = true (ᾱ = 0 at the last step) is not supported")
    pred = scheduler.get("prediction_type", "epsilon")
    if pred not in PREDICTIONS:
        raise ValueError(f"{where}: prediction_type {pred!r} is not supported; accepted: {sorted(PREDICTIONS)}")
    n = int(scheduler.get("num_train_timesteps", 1000))
    trained = scheduler.get("trained_betas")
    try:
        if trained is not None:
            sde = DiscreteVP.from_betas(np.asarray(trained, np.float64))
        else:
            sde = DiscreteVP.from_schedule(
                scheduler.get("beta_schedule", "linear"),
                float(scheduler.get("beta_start", 1e-4)),
                float(scheduler.get("beta_end", 0.02)),
                n,
            )
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return sde, DiscreteStep(PREDICTIONS[pred])


def _rename(module: str) -> str:
    parts = module.split(".")
    if parts[-1] in OLD_ATTENTION:
        parts[-1] = OLD_ATTENTION[parts[-1]]
    if len(parts) >= 2 and parts[-2] == "to_out" and parts[-1] == "0":
        parts = parts[:-1]
    return ".".join(parts)


def read_weights(path: str) -> dict[str, np.ndarray]:
    """The safetensors file as NumPy arrays (no torch)."""
    try:
        from safetensors.numpy import load_file
    except ImportError as e:
        raise ImportError("reading diffusers weights needs the 'safetensors' package (pip install safetensors)") from e
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def load_folder(folder: str):
    """``(net, sde, conditioning, image_shape, num_classes, files)`` of a diffusers folder, all checked first."""
    paths = files(folder)
    config = _read_json(paths["config"])
    check_config(config, paths["config"])
    if config.get("sample_size") is None:
        raise ValueError(f"{paths['config']}: sample_size is missing (the image size)")
    sde, cond = diffusion_of(_read_json(paths["scheduler"]), paths["scheduler"])
    state = read_weights(paths["weights"])
    if "time_proj.W" in state:  # the older Fourier weight name
        state["time_proj.weight"] = state.pop("time_proj.W")
    from flax import nnx

    net = nnx.eval_shape(lambda: DiffusersUNet2D(config))
    load_torch_state(net, state, _rename, paths["weights"])
    size = config["sample_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (int(h), int(w), int(config.get("in_channels", 3)))
    return net, sde, cond, shape, int(config.get("num_class_embeds") or 0), paths
