"""Training configurations: ``get_config("<data>-<diffusion>")`` with data in {toy, moons, checkerboard, swiss_roll,
digits, cifar10, mnist, celeb_a} and diffusion in {vp, ve, edm, cld, blur, fdm-vp, fdm-ve, fdm-edm, flow}
(``flow``: flow matching with velocity prediction; ``--set loss.prediction=v`` trains VP with v-prediction).

    python experiments/train.py --config experiments/configs/default.py:digits-edm --workdir runs/digits_edm \
        --set train.steps=2000 --set model.width=256

A base config is overlaid per data set (network size, batch, steps) and per diffusion (its hyperparameters, the
loss options, the default sampler). Uses ml_collections when installed, a plain attribute dict otherwise.

EDM and FDM (``edm``, ``fdm-*``) follow the EDM library's training recipe, which the FDM paper keeps:

* ``train.grad_clip = 0``: no gradient clipping (the official loop only replaces non-finite gradients);
* ``train.ema_half_life_images``: 0.25 % of the run's images (EDM: 0.5 Mimg of a 200 Mimg run), with
  ``train.ema_rampup = 0.05`` (half-life ≤ 5 % of the images seen so far). Computed from the data set's default
  ``train.steps`` and ``train.batch_size``: set it yourself when you change those;
* ``loss.fdm_warmup_images = -1``: FDM's loss-weight clamp ``min(λ, 5·100^{n/W})`` ends where the official one does
  relative to its learning-rate ramp (CIFAR-10: 200 (EDM-FDM) / 400 (VP/VE-FDM) iterations of batch 512 within a
  10 Mimg ramp), counted in training images; give W in images to override, 0 to switch it off;
* VE-FDM uses γ = 1 (hard-wired in the official VE network), VP/EDM-FDM γ = 2 (``diffusion.kwargs.gamma``).

Other diffusions keep clipping at 1.0 and a step-counted EMA half-life (``train.ema_half_life``).
"""

try:
    from ml_collections import ConfigDict
except ImportError:  # the GPU image lacks ml_collections

    class ConfigDict(dict):
        def __init__(self, d=None):
            super().__init__({k: ConfigDict(v) if isinstance(v, dict) else v for k, v in (d or {}).items()})

        __getattr__ = dict.__getitem__

        def __setattr__(self, k, v):
            self[k] = v

        def to_dict(self):
            return {k: v.to_dict() if isinstance(v, ConfigDict) else v for k, v in self.items()}


TOYS = ("toy", "ring", "moons", "checkerboard", "swiss_roll")


def _registered_diffusions():
    import diffjax.diffusions

    return diffjax.diffusions.available()


TFDS = {"cifar10": (32, 32, 3), "mnist": (28, 28, 1), "celeb_a": (64, 64, 3)}


def get_config(spec: str = "toy-edm"):
    data_name, _, diff_name = spec.partition("-")
    if not diff_name:
        raise ValueError(f"config spec must be '<data>-<diffusion>', got {spec!r}")
    c = ConfigDict(
        {
            "data": {
                "name": "ring" if data_name == "toy" else data_name,
                "size": 8,
                "data_dir": "",
                "holdout": 200,
                "flip": False,
            },
            "diffusion": {"name": diff_name, "kwargs": {}},
            "model": {
                "kind": "mlp",
                "width": 256,
                "depth": 3,
                "embedding": "positional",
                "channels": 64,
                "channel_mult": (1, 2),
                "num_blocks": 2,
                "attn_resolutions": (),
                "dropout": 0.0,
                "num_classes": 0,
                "bf16": False,
            },
            "loss": {"cld_param": "eps", "label_dropout": 0.0, "fdm_warmup_images": -1.0, "prediction": ""},
            "train": {
                "steps": 4000,
                "batch_size": 256,
                "lr": 2e-3,
                "warmup_steps": 100,
                "grad_clip": 1.0,
                "ema_half_life": 200.0,
                "log_every": 100,
                "eval_every": 1000,
                "ckpt_every": 1000,
                "keep": 3,
                "ema_half_life_images": 0.0,
                "ema_rampup": 0.0,
                "seed": 0,
                "eval_samples": 256,
                "eval_solver": "edm_heun",
                "eval_nfe": 19,
                "tensorboard": False,
            },
            "sample": {"solver": "edm_heun", "nfe": 35, "num": 64},
        }
    )
    if diff_name.startswith("fdm-"):
        c.diffusion.name = "fdm_" + diff_name[4:]
    elif diff_name == "blur":
        c.diffusion.kwargs = ConfigDict({})  # shape filled in from the data by train.py
    elif diff_name not in _registered_diffusions():
        raise ValueError(
            f"unknown diffusion {diff_name!r} in spec {spec!r}; accepted: {_registered_diffusions()} "
            "(fdm-vp/fdm-ve/fdm-edm for FDM; register your own with dj.diffusions.register)"
        )
    if diff_name == "edm" or diff_name.startswith("fdm-"):
        # EDM's (and the FDM paper's) recipe: no gradient clipping; EMA half-life 0.25 % of the run's images (EDM:
        # 0.5 Mimg of 200 Mimg) with ramp-up 0.05; FDM's loss-weight clamp ends at the official fraction of the
        # learning-rate ramp (fdm_warmup_images = -1: derived by the Trainer)
        c.train.update({"grad_clip": 0.0, "ema_rampup": 0.05})
    if diff_name in ("cld", "blur"):
        c.sample.solver, c.sample.nfe = "gddim", 50
        c.train.eval_solver, c.train.eval_nfe = "gddim", 20
    if data_name in TOYS:
        c.model.kind = "mlp"
        if diff_name == "blur":
            raise ValueError("blurring acts on images; use digits/cifar10 with 'blur'")
    elif data_name == "digits":
        c.model.kind = "unet"
        c.data.size = 16
        c.model.update({"channels": 32, "channel_mult": (1, 2), "num_blocks": 1, "attn_resolutions": (8,)})
        c.train.update({"steps": 6000, "batch_size": 128, "lr": 1e-3})
    elif data_name in TFDS:
        c.model.kind = "unet"
        c.model.update(
            {
                "channels": 128,
                "channel_mult": (2, 2, 2),
                "num_blocks": 4,
                "attn_resolutions": (16,),
                "dropout": 0.13,
                "bf16": True,
            }
        )
        c.train.update(
            {
                "steps": 400000,
                "batch_size": 512,
                "lr": 1e-3,
                "warmup_steps": 20000,
                "ema_half_life": 1000.0,
                "log_every": 500,
                "eval_every": 10000,
                "ckpt_every": 5000,
            }
        )
        c.data.flip = True
    else:
        raise ValueError(f"unknown data set {data_name!r}")
    if c.train.ema_rampup:
        c.train.ema_half_life_images = 0.0025 * c.train.steps * c.train.batch_size
    return c
