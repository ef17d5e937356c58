"""FDM fast training, measured so that a speed-up can be told from seed noise.

EDM vs EDM-FDM and VP vs VP-FDM with identical budgets (GroupNorm UNet, Adam, batch, steps, EMA, seeds) on
scikit-learn's digits at their native 8×8 (16×16 with ``--gpu``). Each (arm, seed) is trained with the recipe of
the configs (no gradient clipping, EMA half-life 0.25 % of the run's images with ramp-up 0.05, FDM's loss clamp
ending at the official fraction of the learning-rate ramp) and evaluated every ``--eval-every`` steps on held-out
digits by:

* the denoising loss at 16 fixed noise levels σ ∈ [0.002, 80] (log-spaced) with fixed noise, in the base's
  *unscaled* coordinates with EDM's weight ``(σ² + σ_d²)/(σ σ_d)²`` — the same number for FDM and its base;
* the Fréchet distance (pixel space) and sliced W2 between ``--samples`` EMA samples (EDM Heun from σ = 80, NFE 19)
  and the held-out images.

Reported per arm: mean ± standard deviation over seeds at every evaluation, and the step at which each seed first
reaches the base arm's final mean Fréchet distance (as a fraction of the run). Rows are appended to
``results/bench_fdm_<tag>.jsonl`` as each run ends (a rerun skips finished runs); the summary goes to
``results/bench_fdm_<tag>.{md,json,png}``.

    python experiments/bench_fdm.py                 # CPU: 8×8, 3 seeds × 4 arms (≈ 25 min on 2 cores)
    python experiments/bench_fdm.py --gpu           # one H100/H200: 16×16, larger UNet, more steps (≈ 10 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import diffjax as dj  # noqa: E402
import diffjax.data as dd  # noqa: E402
from diffjax import fid  # noqa: E402
from diffjax.diffusions.recipes import edm_weight  # noqa: E402
from diffjax.files import write_atomic  # noqa: E402
from diffjax.training import LossConfig, TrainConfig, Trainer  # noqa: E402

ARMS = {
    "edm": dj.EDM,
    "edm-fdm": lambda: dj.FDM(base="edm"),
    "vp": dj.VP,
    "vp-fdm": lambda: dj.FDM(base="vp"),
    "vp-fdm-g1": lambda: dj.FDM(base="vp", gamma=1.0),  # the official FFHQ recipe's momentum multiplier
}
BASE_OF = {"edm-fdm": "edm", "vp-fdm": "vp", "vp-fdm-g1": "vp"}
SIGMAS = np.exp(np.linspace(np.log(0.002), np.log(80.0), 16))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def heldout_loss(sde, model, x0, key):
    """Per-σ EDM-weighted denoising error of ``model`` on ``x0`` with fixed noise (unscaled coordinates)."""
    z = jax.random.normal(key, x0.shape)
    out = []
    for s in SIGMAS:
        t = jnp.asarray(sde.t_of_rho(s), jnp.float32)
        a = sde.alpha(t)
        d = model.x0(a * (x0 + s * z), t)
        w = edm_weight(s)  # EDM's (σ² + σ_d²)/(σ σ_d)², σ_d = 0.5
        out.append(float(w * jnp.mean((d - x0) ** 2)))
    return out


def sample_from_80(key, sde, model, n, shape, nfe=19):
    """EDM Heun from σ = 80 (FDM's sampler range; VP's σ(T) = 152 is clipped) down to the diffusion's t_min."""
    solver = dj.solvers.EDMHeun()
    t0 = float(sde.t_of_rho(80.0)) if float(sde.rho(sde.T)) > 80.0 else sde.T
    grid = solver.build_grid(sde, nfe, "karras", t_start=t0)
    init = float(sde.sigma(t0)) * jax.random.normal(jax.random.fold_in(key, 1), (n,) + shape)
    return dj.sample(key, sde, model, solver, nfe=nfe, init=init, grid=grid, check_finite=False)


def run_one(arm, seed, a, train, held):
    sde = ARMS[arm]()
    shape = tuple(train.data_shape)
    net = dj.models.UNet(shape, a.channels, (1, 2), a.blocks, (), rngs=nnx.Rngs(seed))
    cfg = TrainConfig(
        steps=a.steps,
        batch_size=a.batch,
        lr=a.lr,
        warmup_steps=a.warmup,
        grad_clip=0.0,
        ema_half_life_images=0.0025 * a.steps * a.batch,
        ema_rampup=0.05,
        log_every=a.eval_every,
        eval_every=0,
        ckpt_every=0,
        seed=seed,
        progress=False,
    )
    tr = Trainer(sde, net, dataclasses.replace(train, seed=seed), cfg, LossConfig())  # data order follows the seed
    held_flat = held.reshape(len(held), -1).astype(np.float64)
    ref = fid.Moments(held_flat.shape[1]).add(held_flat)
    rows, t0 = [], time.time()
    for step in range(a.eval_every, a.steps + 1, a.eval_every):
        tr.train(steps=step)
        model = tr.model()
        x = np.asarray(sample_from_80(jax.random.key(1000 + seed), sde, model, a.samples, shape))
        flat = x.reshape(len(x), -1).astype(np.float64)
        finite = bool(np.all(np.isfinite(flat)))
        per_sigma = heldout_loss(sde, model, jnp.asarray(held), jax.random.key(7))
        rows.append(
            {
                "arm": arm,
                "seed": seed,
                "step": step,
                "heldout_loss": float(np.mean(per_sigma)),
                "heldout_loss_per_sigma": per_sigma,
                "fd": fid.fid(fid.Moments(flat.shape[1]).add(flat), ref) if finite else float("nan"),
                "sw2": float(dj.metrics.sliced_wasserstein(flat, held_flat, jax.random.key(3)))
                if finite
                else float("nan"),
                "seconds": time.time() - t0,
            }
        )
        print(
            f"{arm:>8} seed {seed} step {step:>5}: held-out loss {rows[-1]['heldout_loss']:.4f}  "
            f"FD {rows[-1]['fd']:.4f}  SW2 {rows[-1]['sw2']:.4f}  ({rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def first_reach(steps, values, target):
    """The first step whose value is ≤ target (None if never)."""
    for s, v in zip(steps, values):
        if v <= target:
            return s
    return None


def summarize(rows, a, tag):
    arms = [arm for arm in ARMS if any(r["arm"] == arm for r in rows)]
    steps = sorted({r["step"] for r in rows})
    table = {}
    for arm in arms:
        for metric in ("heldout_loss", "fd", "sw2"):
            by_seed = {}
            for r in rows:
                if r["arm"] == arm:
                    by_seed.setdefault(r["seed"], {})[r["step"]] = r[metric]
            mat = np.array([[by_seed[s].get(k, np.nan) for k in steps] for s in sorted(by_seed)])
            table[(arm, metric)] = (mat.mean(0), mat.std(0, ddof=1) if len(mat) > 1 else np.zeros(len(steps)), mat)
    summary = {"config": vars(a), "steps": steps, "arms": {}}
    lines = [
        f"# FDM vs base training ({tag}): digits {a.size}×{a.size}, UNet {a.channels} ch, batch {a.batch}, "
        f"{a.steps} steps, seeds {a.seeds}",
        "",
        "Mean ± standard deviation over seeds. Held-out loss: EDM-weighted denoising error at 16 fixed σ; FD: "
        f"pixel Fréchet distance of {a.samples} EMA samples (Heun, NFE 19) to held-out digits.",
        "",
    ]
    for metric, label in (("fd", "Fréchet distance"), ("heldout_loss", "held-out loss"), ("sw2", "sliced W2")):
        lines += [
            f"## {label}",
            "",
            "| arm | " + " | ".join(f"step {s}" for s in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for arm in arms:
            m, sd, _ = table[(arm, metric)]
            lines.append(f"| {arm} | " + " | ".join(f"{x:.4g} ± {y:.2g}" for x, y in zip(m, sd)) + " |")
        lines.append("")
    lines += [
        "## Steps to reach the base's final Fréchet distance",
        "",
        "| arm | base final FD | per seed (first step ≤ target) | fraction of the run (mean ± sd) |",
        "|---|---|---|---|",
    ]
    for arm in arms:
        base = BASE_OF.get(arm, arm)
        if (base, "fd") not in table:
            continue
        target = float(table[(base, "fd")][0][-1])
        per_seed = [first_reach(steps, row, target) for row in table[(arm, "fd")][2]]
        fr = [s / a.steps for s in per_seed if s is not None]
        never = sum(s is None for s in per_seed)
        stat = (f"{np.mean(fr):.2f} ± {np.std(fr, ddof=1) if len(fr) > 1 else 0:.2f}" if fr else "–") + (
            f" ({never} never)" if never else ""
        )
        lines.append(f"| {arm} | {target:.4g} | {per_seed} | {stat} |")
        summary["arms"][arm] = {
            "base": base,
            "target_fd": target,
            "steps_to_target": per_seed,
            "fraction_mean": float(np.mean(fr)) if fr else None,
            "fraction_std": float(np.std(fr, ddof=1)) if len(fr) > 1 else None,
            "never": never,
            **{f"{m}_mean": table[(arm, m)][0].tolist() for m in ("fd", "heldout_loss", "sw2")},
            **{f"{m}_std": table[(arm, m)][1].tolist() for m in ("fd", "heldout_loss", "sw2")},
        }
    with open(os.path.join(RESULTS, f"bench_fdm_{tag}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, f"bench_fdm_{tag}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("fd", "heldout_loss")):
        for arm in arms:
            m, sd, _ = table[(arm, metric)]
            ax.plot(steps, m, "o-" if "fdm" in arm else "s--", label=arm)
            ax.fill_between(steps, m - sd, m + sd, alpha=0.2)
        ax.set(xlabel="step", ylabel=metric, yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"bench_fdm_{tag}.png"), dpi=120)
    plt.close(fig)
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="the GPU setting: 16×16, 64 channels, 4000 steps, batch 256")
    p.add_argument("--arms", default="edm,edm-fdm,vp,vp-fdm,vp-fdm-g1")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--tag", default=None)
    a = p.parse_args(argv)
    gpu = dict(size=16, channels=64, blocks=2, batch=256, steps=4000, eval_every=400, lr=1e-3, warmup=200)
    cpu = dict(size=8, channels=16, blocks=1, batch=128, steps=1000, eval_every=250, lr=2e-3, warmup=100)
    for k, v in (gpu if a.gpu else cpu).items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    tag = a.tag or ("gpu" if a.gpu else "cpu")
    arms = a.arms.split(",")
    for arm in arms:
        if arm not in ARMS:
            raise SystemExit(f"unknown arm {arm!r}; accepted: {list(ARMS)}")
    if a.seeds < 1 or a.steps < a.eval_every:
        raise SystemExit("need --seeds >= 1 and --steps >= --eval-every")
    full = dd.digits(a.size)
    train, held_src = full.split(300)
    held = held_src.x
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"bench_fdm_{tag}.jsonl")
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    cfg_key = {
        k: getattr(a, k)
        for k in ("size", "channels", "blocks", "batch", "steps", "eval_every", "lr", "warmup", "samples")
    }
    rows = [r for r in rows if r.get("config") == cfg_key]  # rows of another setting are not mixed in
    done = {(r["arm"], r["seed"]) for r in rows if r["step"] == a.steps}
    for seed in range(a.seeds):
        for arm in arms:
            if (arm, seed) in done:
                continue
            new = [dict(r, config=cfg_key) for r in run_one(arm, seed, a, train, held)]
            rows = [r for r in rows if (r["arm"], r["seed"]) != (arm, seed)] + new
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    summarize(rows, a, tag)


if __name__ == "__main__":
    main()
