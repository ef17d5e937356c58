"""Train VP and VP-FDM with the official FDM code on the problem of ``make bench-fdm`` (8×8 digits).

``make bench-fdm`` finds diffjax's VP-FDM far behind VP at this scale, while ``make fdm-crosscheck`` finds one
training step equal to the official one. This experiment asks whether the gap is diffjax's or the recipe's: it
trains the official preconditionings (``VPPrecond`` and ``FDM_VPPrecond`` around one small ``SongUNet``) with the
official ``VPLoss`` (FDM's weight warm-up for VP-FDM) and samples with the official ``edm_sampler`` (Heun, σ from 80,
NFE 19), with the budget of the benchmark: batch 128, Adam at 2e-3 ramped over 100 steps, EMA half-life 0.25 % of
the images with ramp-up 0.05, no dropout and no augmentation, 1000 steps, the same train/held-out split. The
training step (loss summed over pixels and averaged over the batch, linear learning-rate ramp on images, gradients
through ``nan_to_num``, EMA by half-life) follows the official training loop, written here for one process. The
metrics are ``make bench-fdm``'s: the held-out denoising loss at 16 fixed σ and the pixel Fréchet distance of the EMA
samples to the held-out digits.

    python experiments/fdm_official_digits.py data OUT                    # diffjax env: the split
    python experiments/fdm_official_digits.py train OUT --fdm-src FDM     # torch env (FDM: sail-sg/FDM checkout)
    python experiments/fdm_official_digits.py compare OUT                 # diffjax env -> results/fdm_official_digits.*

``--gamma`` sets VP-FDM's momentum multiplier (official default 2; its FFHQ recipe uses 1); ``--arms`` picks among
``vp``, ``vp-fdm`` (and ``vp-fdm-g1``: γ = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SIGMAS = np.exp(np.linspace(np.log(0.002), np.log(80.0), 16))  # bench_fdm's held-out noise levels
SIGMA_DATA = 0.5
ARMS = {"vp": None, "vp-fdm": 2.0, "vp-fdm-g1": 1.0}  # arm -> FDM multiplier γ (None: plain VP)
FDM_WARMUP_FRACTION = 400 * 512 / 10e6  # VP-FDM's official clamp: 400 iterations of batch 512 in a 10 Mimg ramp


def data(out):
    sys.path.insert(0, os.path.join(HERE, ".."))
    import diffjax.data as dd

    train, held = dd.digits(8).split(300)  # make bench-fdm's split
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "digits.npz"), train=train.x, held=held.x)
    print(f"wrote {out}/digits.npz: train {train.x.shape}, held-out {held.x.shape}")


def train(out, src, arms, seeds, steps, eval_every, batch=128, lr=2e-3, warmup=100, samples=2000):
    import torch

    sys.path.insert(0, src)
    from generate import edm_sampler
    from training import loss, networks

    torch.set_num_threads(os.cpu_count() or 1)
    d = np.load(os.path.join(out, "digits.npz"))
    x_train = torch.tensor(d["train"].transpose(0, 3, 1, 2))
    x_held = torch.tensor(d["held"].transpose(0, 3, 1, 2))
    song = dict(model_type="SongUNet", model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[])
    song["dropout"] = 0.0
    warmup_ite = max(1, round(FDM_WARMUP_FRACTION * warmup))  # the clamp's length in loss calls, as bench_fdm
    for seed in range(seeds):
        for arm in arms:
            path = os.path.join(out, f"{arm}_seed{seed}.npz")
            if os.path.exists(path):  # finished before: a rerun only adds what is missing
                continue
            gamma = ARMS[arm]
            torch.manual_seed(seed)
            if gamma is None:
                net = networks.VPPrecond(img_resolution=8, img_channels=1, **song)
                loss_fn = loss.VPLoss()
            else:
                net = networks.FDM_VPPrecond(img_resolution=8, img_channels=1, fdm_multiplier=gamma, **song)
                loss_fn = loss.VPLoss(warmup_ite=warmup_ite)
            net.train()
            ema = [p.detach().clone() for p in net.parameters()]
            opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
            gen = torch.Generator().manual_seed(1000 + seed)
            record = {}
            for step in range(1, steps + 1):
                idx = torch.randint(len(x_train), (batch,), generator=gen)
                opt.zero_grad(set_to_none=True)
                loss_fn(net, x_train[idx], None).sum().mul(1.0 / batch).backward()
                nimg = step * batch
                for g in opt.param_groups:
                    g["lr"] = lr * min(nimg / (warmup * batch), 1.0)
                for p in net.parameters():
                    if p.grad is not None:
                        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                opt.step()
                half_life = min(0.0025 * steps * batch, nimg * 0.05)
                beta = 0.5 ** (batch / max(half_life, 1e-8))
                with torch.no_grad():
                    for pe, p in zip(ema, net.parameters()):
                        pe.copy_(p.detach().lerp(pe, beta))
                if step % eval_every == 0:
                    record[step] = evaluate(net, ema, x_held, edm_sampler, seed, samples)
                    print(
                        f"{arm:>9} seed {seed} step {step:>5}: held-out loss {np.mean(record[step][0]):.4f}", flush=True
                    )
            np.savez(
                path + ".tmp.npz",
                steps=np.array(sorted(record)),
                heldout=np.array([record[s][0] for s in sorted(record)]),
                samples=np.array([record[s][1] for s in sorted(record)]),
            )
            os.replace(path + ".tmp.npz", path)


def evaluate(net, ema, x_held, edm_sampler, seed, samples):
    """(held-out loss per σ, EMA samples (n, 8, 8, 1)) with the EMA weights swapped in."""
    import torch

    live = [p.detach().clone() for p in net.parameters()]
    net.eval()
    with torch.no_grad():
        for p, pe in zip(net.parameters(), ema):
            p.copy_(pe)
        z = torch.randn(x_held.shape, generator=torch.Generator().manual_seed(7))
        per_sigma = []
        for s in SIGMAS:
            sig = torch.full((len(x_held),), float(s))
            dn = net(x_held + s * z, sig).double()
            w = (s**2 + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2
            per_sigma.append(float(w * ((dn - x_held.double()) ** 2).mean()))
        latents = torch.randn((samples, 1, 8, 8), generator=torch.Generator().manual_seed(1000 + seed))
        x = edm_sampler(net, latents, num_steps=10).float().numpy().transpose(0, 2, 3, 1)
        for p, pl in zip(net.parameters(), live):
            p.copy_(pl)
    net.train()
    return per_sigma, x


def compare(out):
    sys.path.insert(0, os.path.join(HERE, ".."))
    import jax

    import diffjax as dj
    from diffjax import fid

    held = np.load(os.path.join(out, "digits.npz"))["held"].reshape(300, -1).astype(np.float64)
    ref = fid.Moments(held.shape[1]).add(held)
    rows = []
    for name in sorted(os.listdir(out)):
        if not name.endswith(".npz") or "_seed" not in name or name.endswith(".tmp.npz"):
            continue
        arm, seed = name[:-4].rsplit("_seed", 1)
        r = np.load(os.path.join(out, name))
        for step, per_sigma, x in zip(r["steps"], r["heldout"], r["samples"]):
            flat = x.reshape(len(x), -1).astype(np.float64)
            finite = bool(np.all(np.isfinite(flat)))
            rows.append(
                {
                    "arm": arm,
                    "seed": int(seed),
                    "step": int(step),
                    "heldout_loss": float(np.mean(per_sigma)),
                    "heldout_loss_per_sigma": [float(v) for v in per_sigma],
                    "fd": fid.fid(fid.Moments(flat.shape[1]).add(flat), ref) if finite else float("nan"),
                    "sw2": float(dj.metrics.sliced_wasserstein(flat, held, jax.random.key(3))) if finite else None,
                }
            )
    bench = os.path.join(RESULTS, "bench_fdm_cpu.jsonl")
    ours = [json.loads(line) for line in open(bench)] if os.path.exists(bench) else []
    lines = [
        "# VP and VP-FDM trained with the official FDM code on make bench-fdm's problem (8×8 digits)",
        "",
        "Official `VPPrecond` / `FDM_VPPrecond` (SongUNet 16 ch, [1, 2], 1 block), official `VPLoss` (with FDM's "
        "warm-up for VP-FDM), official `edm_sampler` (NFE 19); batch 128, Adam 2e-3, 1000 steps. Mean over seeds; "
        "± is the standard deviation over seeds; diffjax's rows are `make bench-fdm`'s (results/bench_fdm_cpu.jsonl).",
        "",
        "| code | arm | seeds | step | held-out loss | FD | held-out loss at σ = 0.002 … 80 (16 levels, log-spaced) |",
        "|---|---|---|---|---|---|---|",
    ]

    def table(code, rs):
        for arm in sorted({r["arm"] for r in rs}):
            for step in sorted({r["step"] for r in rs if r["arm"] == arm}):
                sel = [r for r in rs if r["arm"] == arm and r["step"] == step]
                per = np.mean([r["heldout_loss_per_sigma"] for r in sel], 0)
                stat = lambda k: np.array([r[k] for r in sel], float)  # noqa: E731
                sd = lambda v: f" ± {np.std(v, ddof=1):.2g}" if len(v) > 1 else ""  # noqa: E731
                lines.append(
                    f"| {code} | {arm} | {len(sel)} | {step} | {stat('heldout_loss').mean():.4g}"
                    f"{sd(stat('heldout_loss'))} | {stat('fd').mean():.4g}{sd(stat('fd'))} | "
                    + " ".join(f"{v:.3g}" for v in per)
                    + " |"
                )

    table("official", rows)
    table("diffjax", [r for r in ours if r["arm"] in ARMS])
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "fdm_official_digits.json"), "w") as f:
        json.dump({"official": rows}, f, indent=1)
    with open(os.path.join(RESULTS, "fdm_official_digits.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["data", "train", "compare"])
    p.add_argument("out")
    p.add_argument("--fdm-src", default=None, help="a checkout of sail-sg/FDM")
    p.add_argument("--arms", default="vp,vp-fdm")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--samples", type=int, default=2000)
    a = p.parse_args(argv)
    if a.step == "data":
        data(a.out)
    elif a.step == "train":
        arms = a.arms.split(",")
        unknown = [arm for arm in arms if arm not in ARMS]
        if unknown or not a.fdm_src:
            raise SystemExit(f"need --fdm-src and arms among {list(ARMS)} (unknown: {unknown})")
        train(a.out, a.fdm_src, arms, a.seeds, a.steps, a.eval_every, samples=a.samples)
    else:
        compare(a.out)


if __name__ == "__main__":
    main()
