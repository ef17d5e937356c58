"""FDM fast training: EDM vs EDM-FDM and VP vs VP-FDM with identical budgets (network, optimizer, batch, steps).

Every ``eval_every`` steps each model is sampled (EMA weights, EDM Heun, NFE 35, σ from 80 down as in FDM's
sampler) and scored by model-independent metrics against the data: sliced W2 in pixel space and the Fréchet
distance between the samples' moments and the data's (pixel space). Reported: the steps each FDM run needs to
reach its base model's final quality (the paper: about half the training cost).

    python experiments/bench_training.py [--quick] [--data digits|ring] [--steps N] [--out experiments/results]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import diffjax as dj
import diffjax.data as dd
from benchutil import nfe_to_reach
from diffjax.training import LossConfig, TrainConfig, Trainer

PAIRS = {"edm": (dj.EDM(), dj.FDM(base="edm")), "vp": (dj.VP(), dj.FDM(base="vp"))}


def sample_from_80(key, sde, model, n, shape, nfe=35):
    """EDM Heun from σ = 80 (FDM's sampler range; VP's σ(T) = 152 is clipped) down to the diffusion's t_min."""
    solver = dj.solvers.EDMHeun()
    t0 = float(sde.t_of_rho(80.0)) if float(sde.rho(sde.T)) > 80.0 else sde.T
    grid = solver.build_grid(sde, nfe, "karras", t_start=t0)
    init = float(sde.sigma(t0)) * jax.random.normal(jax.random.fold_in(key, 1), (n,) + shape)
    return dj.sample(key, sde, model, solver, nfe=nfe, init=init, grid=grid, check_finite=False)


def make_net(kind, shape, size):
    if kind == "mlp":
        return dj.models.MLP(shape, 128 * size, 3, rngs=nnx.Rngs(0))
    return dj.models.UNet(shape, 32 * size, (1, 2), 1 + (size > 1), (8,), rngs=nnx.Rngs(0))


def run(a):
    if a.data == "ring":
        src = dd.toy("ring", 20000)
    else:
        src = dd.digits(a.size_px)
    ref = src.x if len(src.x) < 5000 else src.x[:5000]
    flat = ref.reshape(len(ref), -1).astype(np.float64)
    mean, cov = flat.mean(0), np.cov(flat, rowvar=False)
    shape = tuple(src.data_shape)
    evals = list(range(a.eval_every, a.steps + 1, a.eval_every))
    results = {}
    for pair in a.pairs:
        for sde in PAIRS[pair]:
            label = sde.name + (f"-{sde.base}" if isinstance(sde, dj.FDM) else "")
            cfg = TrainConfig(steps=a.steps, batch_size=a.batch, lr=a.lr, warmup_steps=min(200, a.steps // 10),
                              ema_half_life=a.ema, log_every=a.eval_every, progress=False, seed=0)
            tr = Trainer(sde, make_net(a.net, shape, a.net_size), src, cfg, LossConfig(fdm_warmup=a.fdm_warmup))
            rows, t0 = [], time.time()
            for k in evals:
                tr.train(steps=k)
                x = np.asarray(sample_from_80(jax.random.key(7), sde, tr.model(), a.num, shape))
                ok = bool(np.all(np.isfinite(x)))
                row = {"step": k, "time_s": time.time() - t0,
                       "sliced_w2": float(dj.metrics.sliced_wasserstein(x, ref, jax.random.key(3))) if ok else float("inf"),
                       "frechet": dj.metrics.frechet_distance(x, mean, cov) if ok else float("inf")}
                rows.append(row)
                print(label, json.dumps(row), flush=True)
                os.makedirs(a.out, exist_ok=True)
                with open(os.path.join(a.out, "bench_training_rows.jsonl"), "a") as f:  # kept if the run is cut short
                    f.write(json.dumps({"model": label, **row}) + "\n")
            results[label] = rows
    summary = {}
    for pair in a.pairs:
        base, fdm = PAIRS[pair]
        lb, lf = base.name, f"FDM-{pair}"
        for metric in ("frechet", "sliced_w2"):
            target = results[lb][-1][metric]
            need = nfe_to_reach([r["step"] for r in results[lf]], [r[metric] for r in results[lf]], target)
            summary[f"{pair}:{metric}"] = {"base_final": target, "fdm_final": results[lf][-1][metric],
                                           "fdm_steps_to_base_final": need, "fraction": need / a.steps}
    os.makedirs(a.out, exist_ok=True)
    name = f"bench_training_{a.data}" + ("_quick" if a.quick else "") + (f"_{a.tag}" if a.tag else "")
    meta = {k: v for k, v in vars(a).items()}
    meta["device"] = jax.devices()[0].device_kind
    with open(os.path.join(a.out, name + ".json"), "w") as f:
        json.dump({"config": meta, "results": results, "summary": summary}, f, indent=1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("frechet", "sliced_w2")):
        for label, rows in results.items():
            ax.semilogy([r["step"] for r in rows], [r[metric] for r in rows], "o-", label=label)
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(f"FDM vs base training on {a.data} ({meta['device']})")
    fig.savefig(os.path.join(a.out, name + ".png"), dpi=100, bbox_inches="tight")
    lines = [f"# FDM training speed on {a.data} ({meta['device']}, {a.steps} steps, batch {a.batch})", "",
             "| pair | metric | base final | FDM final | FDM steps to reach base final | fraction |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        pair, metric = key.split(":")
        lines.append(f"| {pair} | {metric} | {s['base_final']:.3g} | {s['fdm_final']:.3g} | "
                     f"{s['fdm_steps_to_base_final']:.0f} | {s['fraction']:.2f} |")
    with open(os.path.join(a.out, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data", default="digits", choices=["digits", "ring"])
    p.add_argument("--size-px", type=int, default=8)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=100.0)
    p.add_argument("--fdm-warmup", type=int, default=200)
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--net-size", type=int, default=1)
    p.add_argument("--net", default=None, choices=["mlp", "unet"], help="default: unet for digits on a GPU, else mlp")
    p.add_argument("--pairs", nargs="+", default=["edm", "vp"])
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    a.steps = a.steps or (300 if a.quick else 3000)
    a.net = a.net or ("unet" if a.data == "digits" and jax.default_backend() == "gpu" else "mlp")
    a.eval_every = a.eval_every or (a.steps // 3 if a.quick else a.steps // 10)
    if a.quick:
        a.num = min(a.num, 300)
    run(a)
