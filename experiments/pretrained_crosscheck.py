"""Cross-check diffjax's ports of published networks against the original code, with shared random weights.

Two steps, because the originals need torch, diffusers and the papers' repositories (kept out of diffjax):

    python experiments/pretrained_crosscheck.py reference OUT --edm-src EDM --score-sde-src SCORE_SDE [--full]
        # in an environment with torch + diffusers (EDM's code needs torch only; score_sde's Flax code needs
        # jax, flax and ml_collections, so that family is written by the second interpreter given by --jax-python)
    python experiments/pretrained_crosscheck.py compare OUT   # in diffjax's env -> results/pretrained_crosscheck.json

``make pretrained-crosscheck EDM_SRC=... SCORE_SDE_SRC=...`` runs both (a checkout of NVlabs/edm and of
yang-song/score_sde; nothing of them is copied into diffjax). For every case the reference step builds the
original network of a config with random weights (every parameter redrawn, so that no zero-initialised layer hides a
difference), saves it in the original's own file format — a diffusers folder (``config.json``, safetensors,
``scheduler_config.json``), an EDM pickle (``dict(ema=…, loss_fn=…, augment_pipe=…, dataset_kwargs=…)`` written
by EDM's persistence, as its training loop does), a score_sde Flax checkpoint (msgpack) — and records the
original's outputs on fixed inputs and noise levels. The compare step loads each file with
``dj.models.load_pretrained`` and reports ``max |ours − original| / max |original|`` of the network output and of
the model's prediction.

``--small`` (default) writes the tiny configs whose files are the golden fixtures in tests/fixtures/pretrained/;
``--full`` the published sizes (EDM CIFAR-10 DDPM++/NCSN++, ImageNet-64 ADM, DDPM CIFAR-10, score_sde NCSN++
CIFAR-10), compared but not committed.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "pretrained")
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------------------------------------------
# reference step (torch)
# ----------------------------------------------------------------------------------------------------------------
def redraw(module, seed):
    """Every parameter redrawn: weights N(0, 1/fan_in), norm scales 1 + N(0, 0.1²), biases N(0, 0.1²)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def diffusers_cases(full):
    ddpm = dict(
        block_out_channels=[8, 16, 16],
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        attention_head_dim=None,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        norm_eps=1e-6,
        norm_num_groups=2,
        sample_size=16,
        in_channels=3,
        out_channels=3,
    )
    if full:  # google/ddpm-cifar10-32's architecture
        ddpm.update(
            block_out_channels=[128, 256, 256, 256],
            layers_per_block=2,
            norm_num_groups=32,
            sample_size=32,
            down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        )
    ncsnpp = dict(
        block_out_channels=[32, 32, 32],
        time_embedding_type="fourier",
        flip_sin_to_cos=True,
        down_block_types=["SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"],
        up_block_types=["SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"],
        layers_per_block=1,
        mid_block_scale_factor=float(np.sqrt(2.0)),
        norm_eps=1e-6,
        norm_num_groups=8,
        sample_size=16,
        attention_head_dim=None,
        center_input_sample=False,
    )
    cases = {
        "diffusers_ddpm": (
            ddpm,
            (
                "DDPMScheduler",
                dict(
                    num_train_timesteps=1000,
                    beta_schedule="linear",
                    beta_start=1e-4,
                    beta_end=0.02,
                    prediction_type="epsilon",
                ),
            ),
        ),
        "diffusers_ncsnpp_ve": (
            ncsnpp,
            ("ScoreSdeVeScheduler", dict(num_train_timesteps=2000, sigma_min=0.01, sigma_max=348.0, sampling_eps=1e-5)),
        ),
    }
    if not full:
        cond = dict(
            ddpm,
            num_class_embeds=10,
            resnet_time_scale_shift="scale_shift",
            layers_per_block=2,
            down_block_types=["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            downsample_padding=1,
            flip_sin_to_cos=True,
            freq_shift=0,
            attention_head_dim=4,
        )
        cases["diffusers_cond_vpred_cosine"] = (
            cond,
            (
                "DDIMScheduler",
                dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"),
            ),
        )
    return cases


def reference_diffusers(out, full):
    import diffusers
    import torch

    rng = np.random.default_rng(1)
    for i, (name, (config, (sched_cls, sched_kw))) in enumerate(diffusers_cases(full).items()):
        folder = os.path.join(out, name)
        net = diffusers.UNet2DModel(**config).eval()
        redraw(net, seed=10 + i)
        if name == "diffusers_ddpm" and not full:  # a checkpoint with the older attention names (query/key/value)
            net.save_pretrained(folder, safe_serialization=True)
            from safetensors.numpy import load_file, save_file

            path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
            sd = load_file(path)
            rename = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
            for new, old in rename.items():
                sd = {k.replace(f".{new}.", f".{old}."): v for k, v in sd.items()}
            save_file(sd, path)
        else:
            net.save_pretrained(folder, safe_serialization=True)
        getattr(diffusers, sched_cls)(**sched_kw).save_pretrained(folder)
        res = config["sample_size"]
        b = 3
        x = rng.normal(size=(b, 3, res, res)).astype(np.float32)
        if config.get("time_embedding_type") == "fourier":
            ts = np.array([0.01, 1.7, 300.0], np.float32)
        else:
            ts = np.array([0.0, 417.0, 999.0], np.float32)  # trained steps
        labels = np.array([0, 3, 9], np.int64) if config.get("num_class_embeds") else None
        with torch.no_grad():
            outs = [
                net(
                    torch.tensor(x[j : j + 1]),
                    torch.tensor(ts[j]),
                    None if labels is None else torch.tensor(labels[j : j + 1]),
                ).sample.numpy()
                for j in range(b)
            ]
        io = dict(x=x.transpose(0, 2, 3, 1), timesteps=ts, out=np.concatenate(outs).transpose(0, 2, 3, 1))
        if labels is not None:
            io["labels"] = labels
        np.savez(os.path.join(folder, "io.npz"), **io)
        print(f"wrote {folder}")


def edm_cases(full):
    small_song = dict(
        model_type="SongUNet", model_channels=8, channel_mult=[1, 2, 2], num_blocks=1, attn_resolutions=[8], dropout=0.1
    )
    ncsn = dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual", resample_filter=[1, 3, 3, 1])
    small_adm = dict(
        model_type="DhariwalUNet",
        model_channels=8,
        channel_mult=[1, 2],
        num_blocks=1,
        attn_resolutions=[8],
        dropout=0.1,
    )
    if full:
        song = dict(
            model_type="SongUNet",
            model_channels=128,
            channel_mult=[2, 2, 2],
            num_blocks=4,
            attn_resolutions=[16],
            dropout=0.13,
            augment_dim=9,
        )
        return {
            "edm_vp_ddpmpp_cifar10": ("VPPrecond", 32, 0, dict(song)),
            "edm_ve_ncsnpp_cifar10": ("VEPrecond", 32, 0, dict(song, **ncsn)),
            "edm_edm_ddpmpp_cifar10_cond": ("EDMPrecond", 32, 10, dict(song)),
            "edm_edm_adm_imagenet64_cond": (
                "EDMPrecond",
                64,
                1000,
                dict(
                    model_type="DhariwalUNet",
                    model_channels=192,
                    channel_mult=[1, 2, 3, 4],
                    num_blocks=3,
                    attn_resolutions=[32, 16, 8],
                    dropout=0.1,
                ),
            ),
        }
    return {
        "edm_vp_ddpmpp": ("VPPrecond", 16, 0, dict(small_song, augment_dim=9)),
        "edm_ve_ncsnpp": ("VEPrecond", 16, 0, dict(small_song, **ncsn)),
        "edm_edm_ncsnpp_skip_cond": (
            "EDMPrecond",
            16,
            10,
            dict(
                small_song,
                embedding_type="fourier",
                channel_mult_noise=2,
                encoder_type="skip",
                decoder_type="skip",
                resample_filter=[1, 3, 3, 1],
            ),
        ),
        "edm_iddpm_adm": ("iDDPMPrecond", 16, 0, dict(small_adm)),
        "edm_edm_adm_cond": ("EDMPrecond", 16, 10, dict(small_adm)),
    }


def reference_edm(out, src, full):
    import torch

    sys.path.insert(0, src)
    import dnnlib
    from training import augment, loss, networks

    if not full:  # small ADM fixtures: 4 channels per attention head (ADM's 64 would need ≥ 128 channels for 2 heads);
        # the heads of every block are read from the file, so the port follows whatever the file says
        block = networks.UNetBlock

        class SmallHeads(block):
            def __init__(self, *args, **kw):
                kw["channels_per_head"] = 4
                super().__init__(*args, **kw)

        networks.UNetBlock = SmallHeads  # pickled as EDM's UNetBlock, with channels_per_head=4 in its init kwargs
    rng = np.random.default_rng(2)
    losses = {
        "VPPrecond": loss.VPLoss,
        "VEPrecond": loss.VELoss,
        "EDMPrecond": loss.EDMLoss,
        "iDDPMPrecond": loss.EDMLoss,
    }
    for i, (name, (precond, res, label_dim, kw)) in enumerate(edm_cases(full).items()):
        net = getattr(networks, precond)(img_resolution=res, img_channels=3, label_dim=label_dim, **kw).eval()
        redraw(net, seed=20 + i)
        net.requires_grad_(False)
        data = dict(
            ema=net,
            loss_fn=losses[precond](),
            augment_pipe=augment.AugmentPipe(p=0.12, xflip=1e8, yflip=1),
            dataset_kwargs=dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="data.zip"),
        )
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"{name}.pkl"), "wb") as f:
            pickle.dump(data, f)
        b = 4
        sigma = np.array([0.002, 0.3, 5.0, 80.0], np.float32)
        x = (rng.normal(size=(b, 3, res, res)) * np.sqrt(0.25 + sigma[:, None, None, None] ** 2)).astype(np.float32)
        labels = np.array([0, 3, 7, 9], np.int64) % max(label_dim, 1) if label_dim else None
        onehot = None if labels is None else torch.nn.functional.one_hot(torch.tensor(labels), label_dim).float()
        seen = {}
        hook = net.model.register_forward_hook(
            lambda m, args, kw, out: seen.update(x=args[0], c=args[1], f=out), with_kwargs=True
        )
        with torch.no_grad():
            d = net(torch.tensor(x), torch.tensor(sigma), onehot).numpy()
        hook.remove()
        io = dict(
            x=x.transpose(0, 2, 3, 1),
            sigma=sigma,
            denoised=d.transpose(0, 2, 3, 1),
            net_x=seen["x"].numpy().transpose(0, 2, 3, 1),
            net_c=seen["c"].numpy(),
            net_out=seen["f"].numpy().transpose(0, 2, 3, 1),
        )
        if labels is not None:
            io["labels"] = labels
        np.savez(os.path.join(out, f"{name}.io.npz"), **io)
        print(f"wrote {out}/{name}.pkl")


def reference(a):
    os.makedirs(a.out, exist_ok=True)
    reference_diffusers(a.out, a.full)
    if a.edm_src:
        reference_edm(a.out, a.edm_src, a.full)
    if a.score_sde_src:  # the Flax original runs in a jax environment
        subprocess.run(
            [a.jax_python, os.path.abspath(__file__), "reference-score-sde", a.out, "--score-sde-src", a.score_sde_src]
            + (["--full"] if a.full else []),
            check=True,
        )
    import torch

    versions = {
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "full": a.full,
        "edm_src": _revision(a.edm_src),
        "score_sde_src": _revision(a.score_sde_src),
    }
    with open(os.path.join(a.out, "versions.json"), "w") as f:
        json.dump(versions, f, indent=1)


def _revision(src):
    """The checkout's commit (``git rev-parse HEAD``), or its path when it is no git work tree."""
    if not src:
        return None
    try:
        return subprocess.run(
            ["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.path.abspath(src)


def _version(pkg):
    from importlib.metadata import version

    return version(pkg)


SCORE_SDE_CASES_SMALL = {
    "score_sde_vp_ddpmpp": (
        "vp/cifar10_ddpmpp_continuous",
        dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,)),
        16,
    ),
    "score_sde_ve_ncsnpp": (
        "ve/cifar10_ncsnpp_continuous",
        dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,)),
        16,
    ),
    "score_sde_ve_ncsnpp_skip": (
        "ve/celebahq_256_ncsnpp_continuous",
        dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,)),
        16,
    ),
}
SCORE_SDE_CASES_FULL = {
    "score_sde_ve_ncsnpp_cifar10": ("ve/cifar10_ncsnpp_continuous", {}, 32),
    "score_sde_subvp_ddpmpp_cifar10": ("subvp/cifar10_ddpmpp_continuous", {}, 32),
}


def reference_score_sde(out, src, full):
    """score_sde's Flax NCSNpp with random weights -> a flax checkpoint (msgpack) + outputs (runs under jax)."""
    import importlib.util
    import types

    import flax
    import flax.serialization
    import flax.training.checkpoints  # noqa: F401  (imported before the tensorflow stand-in below)
    import jax
    import jax.numpy as jnp

    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))  # score_sde's utils import it for file I/O
    flax.optim = getattr(flax, "optim", types.SimpleNamespace(Optimizer=object))  # a type annotation in models.utils
    sys.path[:] = [src] + [p for p in sys.path if os.path.abspath(p or ".") != HERE]  # its configs/, not ours
    from models import ncsnpp  # noqa: F401  (registers the model)
    from models import utils as mutils

    rng = np.random.default_rng(3)
    for i, (name, (cfg_name, over, res)) in enumerate(
        (SCORE_SDE_CASES_FULL if full else SCORE_SDE_CASES_SMALL).items()
    ):
        spec = importlib.util.spec_from_file_location("cfg", os.path.join(src, "configs", cfg_name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        cfg = mod.get_config()
        for k, v in over.items():
            setattr(cfg.model, k, v)
        cfg.data.image_size = res
        model = mutils.get_model(cfg.model.name)(config=cfg)
        variables = model.init(
            {"params": jax.random.key(i), "dropout": jax.random.key(1)},
            jnp.zeros((1, res, res, 3)),
            jnp.ones((1,)),
            train=False,
        )
        keys = iter(jax.random.split(jax.random.key(100 + i), 10000))

        def draw(path, p):  # every parameter redrawn (score_sde zero-initialises some layers)
            k = next(keys)
            last = str(path[-1].key)
            if last in ("kernel", "W") and p.ndim >= 2:
                return jax.random.normal(k, p.shape) / np.sqrt(np.prod(p.shape[:-1]))
            if last == "scale":
                return 1 + 0.1 * jax.random.normal(k, p.shape)
            if last == "W":  # Fourier frequencies: keep their scale
                return p
            return 0.1 * jax.random.normal(k, p.shape)

        params = jax.tree_util.tree_map_with_path(draw, variables["params"])
        state = {"step": 0, "params": params, "params_ema": params, "model_state": {}, "rng": np.zeros(2, np.uint32)}
        with open(os.path.join(out, f"{name}.msgpack"), "wb") as f:
            f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, state)))
        b = 3
        if cfg.training.sde == "vesde":
            cond = np.array([0.01, 1.3, 50.0], np.float32)  # σ in the [0, 1] data space
            x = rng.uniform(0, 1, size=(b, res, res, 3)) + cond[:, None, None, None] * rng.normal(size=(b, res, res, 3))
        else:
            cond = np.array([1.0, 400.0, 999.0], np.float32)  # 999 t
            x = rng.normal(size=(b, res, res, 3))
        x = x.astype(np.float32)
        outp = model.apply({"params": params}, jnp.asarray(x), jnp.asarray(cond), train=False)
        np.savez(
            os.path.join(out, f"{name}.io.npz"),
            x=x,
            cond=cond,
            out=np.asarray(outp),
            config=np.array(cfg_name),
            overrides=np.array(json.dumps(over)),
            image_size=res,
        )
        with open(os.path.join(out, f"{name}.config.json"), "w") as f:  # the variant, as load_pretrained reads it
            json.dump(
                dict(
                    base=cfg_name,
                    image_size=res,
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in over.items()},
                ),
                f,
                indent=1,
            )
        print(f"wrote {out}/{name}.msgpack")


# ----------------------------------------------------------------------------------------------------------------
# compare step (diffjax)
# ----------------------------------------------------------------------------------------------------------------
def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def compare_case(path):
    """(name, rows) for one reference file/folder: the network output and the model prediction vs the original."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    import diffjax as dj
    from diffjax.models import pretrained as P

    rows = {}
    if os.path.isdir(path):  # diffusers
        with np.load(os.path.join(path, "io.npz")) as f:
            io = {k: f[k] for k in f.files}
        pm = dj.models.load_pretrained(path)
        out = pm.network_output(io["x"], io["timesteps"], io.get("labels"))
        rows["network"] = rel(out, io["out"])
    elif path.endswith(".pkl"):
        with np.load(path[:-4] + ".io.npz") as f:
            io = {k: f[k] for k in f.files}
        pm = dj.models.load_pretrained(path)
        rows["network"] = rel(pm.network_output(io["net_x"], io["net_c"], io.get("labels")), io["net_out"])
        rows["denoiser"] = rel(pm.denoise(io["x"], io["sigma"], io.get("labels")), io["denoised"])
    elif path.endswith(".msgpack"):
        with np.load(path[:-8] + ".io.npz") as f:
            io = {k: f[k] for k in f.files}
        pm = dj.models.load_pretrained(path, config=path[:-8] + ".config.json")
        rows["network"] = rel(P.score_sde.original_output(pm, io["x"], io["cond"]), io["out"])
    return rows


def compare(a):
    results, worst = {}, 0.0
    for entry in sorted(os.listdir(a.out)):
        path = os.path.join(a.out, entry)
        if entry.endswith((".io.npz", ".json")) or not (os.path.isdir(path) or entry.endswith((".pkl", ".msgpack"))):
            continue
        rows = compare_case(path)
        results[entry] = rows
        worst = max([worst] + list(rows.values()))
        print(f"{entry:40s} " + "  ".join(f"{k} {v:.2e}" for k, v in rows.items()))
    with open(os.path.join(a.out, "versions.json")) as f:
        versions = json.load(f)

    result = {
        "cases": results,
        "max_rel_diff": worst,
        "tolerance": TOLERANCE,
        "reference": versions,
    }
    from benchutil import write_crosscheck

    name = "pretrained_crosscheck_full.json" if versions.get("full") else "pretrained_crosscheck.json"
    write_crosscheck(name, result, "a port differs from its original beyond the tolerance")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["reference", "reference-score-sde", "compare"])
    p.add_argument("out")
    p.add_argument("--edm-src", default=None, help="a checkout of NVlabs/edm")
    p.add_argument("--score-sde-src", default=None, help="a checkout of yang-song/score_sde")
    p.add_argument(
        "--jax-python",
        default=os.path.join(HERE, "..", ".venv", "bin", "python"),
        help="the interpreter (with jax, flax, ml_collections) that runs score_sde's Flax code",
    )
    p.add_argument("--full", action="store_true", help="the published sizes instead of the small fixtures")
    a = p.parse_args(argv)
    if a.step == "reference":
        reference(a)
    elif a.step == "reference-score-sde":
        reference_score_sde(a.out, a.score_sde_src, a.full)
    else:
        compare(a)


if __name__ == "__main__":
    main()
