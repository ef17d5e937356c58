"""Cross-check one FDM training step against the official FDM code, with shared random weights.

Two steps, because the original needs torch and the FDM repository (kept out of diffjax):

    python experiments/fdm_crosscheck.py reference OUT --fdm-src FDM   # torch env; FDM: a checkout of sail-sg/FDM
    python experiments/fdm_crosscheck.py compare OUT                   # diffjax's env -> results/fdm_crosscheck.json

The reference step builds one small SongUNet with every parameter redrawn, saves it in an EDM network pickle (the
inner network inside EDM's plain ``EDMPrecond``, a file diffjax's converter reads), and for each variant — the
official ``FDM_VPPrecond`` + ``VPLoss``, ``FDM_VEPrecond`` + ``VELoss``, ``FDM_EDMPrecond`` + ``EDMLoss`` around
that same network — runs the official loss on a fixed batch at three points of the weight warm-up (the clamp at 5,
at 50, and after it), recording what the loss drew (σ, the noise) and what it computed: the denoiser output, the
per-sample weights, the per-sample loss and the gradient norm of the mean loss over the network's parameters. The
compare step loads the pickle with ``dj.models.load_pretrained``, puts diffjax's FDM recipe around the same network,
feeds the FDM-space state ``s_F(σ)(y + n)`` at ``t = t_of_rho(σ)`` with the clamp at the same value (``images =
W log(clamp/5)/log 100``), and reports the largest relative difference of each quantity.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "fdm")
TOLERANCE = 1e-5
WARMUP = 100  # the official warmup_ite of these checks (loss calls); diffjax counts it in images
CASES = {  # diffjax base -> (official preconditioning, official loss, its FDM multiplier γ)
    "vp": ("FDM_VPPrecond", "VPLoss", 2.0),
    "ve": ("FDM_VEPrecond", "VELoss", 1.0),  # the official VE preconditioning hard-wires γ = 1
    "edm": ("FDM_EDMPrecond", "EDMLoss", 2.0),
}
CLAMPS = (5.0, 50.0, 1000.0)  # inside the warm-up (its start, later) and after it (≥ 500: no clamp)


def reference(out, src, revision):
    import torch

    sys.path.insert(0, src)
    sys.path.insert(0, HERE)
    import dnnlib
    from pretrained_crosscheck import redraw
    from training import loss, networks

    song = dict(model_type="SongUNet", model_channels=8, channel_mult=[1, 2, 2], num_blocks=1, attn_resolutions=[8])
    song["dropout"] = 0.0  # a deterministic step
    plain = networks.EDMPrecond(img_resolution=16, img_channels=3, label_dim=0, **song)
    redraw(plain, seed=7)
    os.makedirs(out, exist_ok=True)
    data = dict(ema=plain, dataset_kwargs=dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset"))
    with open(os.path.join(out, "fdm_songunet.pkl"), "wb") as f:
        pickle.dump(data, f)
    rng = np.random.default_rng(5)
    images = torch.tensor(rng.uniform(-1, 1, (12, 3, 16, 16)).astype(np.float32))
    io = {"images": images.numpy().transpose(0, 2, 3, 1)}
    for i, (base, (precond, loss_name, gamma)) in enumerate(CASES.items()):
        kw = {} if base == "ve" else dict(fdm_multiplier=gamma)
        net = getattr(networks, precond)(img_resolution=16, img_channels=3, label_dim=0, **song, **kw)
        net.model = plain.model  # the same weights
        seen = {}

        def recording(x, sigma, labels=None, augment_labels=None, net=net, seen=seen):
            d = net(x, sigma, labels)
            seen.update(x=x.detach().clone(), sigma=sigma.detach().clone(), d=d.detach().clone())
            return d

        for j, clamp in enumerate(CLAMPS):
            loss_fn = getattr(loss, loss_name)(warmup_ite=WARMUP)
            loss_fn.clamp_cur = clamp
            torch.manual_seed(100 * i + j)
            net.zero_grad()
            value = loss_fn(recording, images, None)
            value.mean().backward()
            grads = [p.grad for p in net.model.parameters() if p.grad is not None]
            sq = (seen["d"] - images) ** 2
            key = f"{base}_{j}"
            io[f"{key}_clamp"] = np.float32(clamp)
            io[f"{key}_sigma"] = seen["sigma"].reshape(-1).numpy()
            io[f"{key}_noise"] = (seen["x"] - images).numpy().transpose(0, 2, 3, 1)
            io[f"{key}_denoised"] = seen["d"].numpy().transpose(0, 2, 3, 1)
            io[f"{key}_loss"] = value.detach().mean(dim=(1, 2, 3)).numpy()
            io[f"{key}_weight"] = (value.detach().mean(dim=(1, 2, 3)) / sq.mean(dim=(1, 2, 3))).numpy()
            io[f"{key}_grad_norm"] = np.float64(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item())
    np.savez(os.path.join(out, "fdm_step.io.npz"), **io)
    with open(os.path.join(out, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "fdm": revision, "warmup_ite": WARMUP}, f)
    print(f"wrote {out}/fdm_songunet.pkl and fdm_step.io.npz")


def compare_step(folder, bases=tuple(CASES)) -> dict:
    """``{case: {quantity: max relative difference}}`` of diffjax's FDM step against the recorded official one."""
    sys.path.insert(0, os.path.join(HERE, ".."))
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import diffjax as dj
    from diffjax.diffusions.recipes import mean_sq
    from diffjax.models.precond import Preconditioned

    pm = dj.models.load_pretrained(os.path.join(folder, "fdm_songunet.pkl"))
    with np.load(os.path.join(folder, "fdm_step.io.npz")) as f:
        io = {k: f[k] for k in f.files}
    y = jnp.asarray(io["images"])
    graphdef, params, rest = nnx.split(pm.net, nnx.Param, ...)
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))
    results = {}
    for base in bases:
        sde = dj.FDM(base)
        recipe = sde.training_recipe(fdm_warmup_images=float(WARMUP))

        def step_loss(p, t, u, images, sde=sde, recipe=recipe):
            net = nnx.merge(graphdef, p, rest)
            d = Preconditioned(sde, recipe, net, None)(u, t)
            _, w = recipe.target_and_weight(sde, y, None, t, images)
            per = w * mean_sq(d - y)
            return jnp.mean(per), (d, w, per)

        step = jax.jit(jax.value_and_grad(step_loss, has_aux=True))  # one compilation per base
        for j in range(len(CLAMPS)):
            key = f"{base}_{j}"
            clamp = float(io[f"{key}_clamp"])
            images = jnp.float32(WARMUP * np.log(clamp / 5.0) / np.log(100.0) if clamp < 500 else 10.0 * WARMUP)
            sigma = jnp.asarray(io[f"{key}_sigma"])
            t = sde.t_of_rho(sigma)
            u = sde.mean_factor(t)[:, None, None, None] * (y + jnp.asarray(io[f"{key}_noise"]))

            (_, (d, w, per)), g = step(params, t, u, images)
            gnorm = float(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree.leaves(g))))
            results[key] = {
                "clamp": clamp,
                "denoised": rel(d, io[f"{key}_denoised"]),
                "weight": rel(w, io[f"{key}_weight"]),
                "loss": rel(per, io[f"{key}_loss"]),
                "grad_norm": abs(gnorm - float(io[f"{key}_grad_norm"])) / float(io[f"{key}_grad_norm"]),
            }
    return results


def compare(out):

    results = compare_step(out)
    worst = max(v for r in results.values() for k, v in r.items() if k != "clamp")
    for key, r in results.items():
        print(f"{key:8s} " + "  ".join(f"{k} {v:.2e}" for k, v in r.items()))
    with open(os.path.join(out, "versions.json")) as f:
        versions = json.load(f)
    from benchutil import write_crosscheck

    result = {"cases": results, "max_rel_diff": worst, "tolerance": TOLERANCE, "reference": versions}
    write_crosscheck(
        "fdm_crosscheck.json", result, "diffjax's FDM step differs from the official one beyond the tolerance"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["reference", "compare"])
    p.add_argument("out")
    p.add_argument("--fdm-src", default=None, help="a checkout of sail-sg/FDM")
    p.add_argument("--fdm-revision", default="unknown", help="its commit, recorded with the results")
    a = p.parse_args(argv)
    if a.step == "reference":
        reference(a.out, a.fdm_src, a.fdm_revision)
    else:
        compare(a.out)


if __name__ == "__main__":
    main()
