"""PDS vs its base predictor–corrector sampler at equal NFE, on PDS's setting: images whose frequencies have
strongly unequal scales. Data: a zero-mean Gaussian field on 32×32×3 with a 1/f² power spectrum (per channel),
whose exact VE score is diagonal in the DFT basis: ``s(x, t) = −F⁻¹[F x / (λ_k + σ_t²)]``.

Metric: the log-spectral distance between the samples' per-frequency variance and the exact variance of p_tmin,
``mean_k |log(v̂_k / v_k)|`` (0 is perfect; sampling noise with n samples ≈ 0.8·√(2/(3n))), and the speed-up =
NFE the base sampler needs (log-log interpolation) to reach PDS's distance at a given NFE.

    python experiments/bench_pds.py [--quick] [--out experiments/results]
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from benchutil import nfe_to_reach

import diffjax as dj
from diffjax.solvers import PDS, PredictorCorrector, preconditioner_from_images

SHAPE = (32, 32, 3)


def spectrum(shape=SHAPE, pixel_var=0.25):
    """λ_k ∝ 1/(1 + |f|²) over the unshifted DFT grid, scaled so the mean pixel variance is ``pixel_var``."""
    h, w, c = shape
    fy, fx = np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w
    lam = 1.0 / (1.0 + fy[:, None] ** 2 + fx[None, :] ** 2)
    lam = np.repeat(lam[:, :, None], c, axis=2)
    return lam * pixel_var / lam.mean()


def make_score(sde, lam):
    lam = jnp.asarray(lam)

    def score(x, t):
        var = lam + sde.sigma(t) ** 2
        return -jnp.real(jnp.fft.ifft2(jnp.fft.fft2(x, axes=(1, 2)) / var, axes=(1, 2))).astype(x.dtype)

    return score


def sample_data(key, n, lam):
    z = jax.random.normal(key, (n,) + SHAPE)
    return jnp.real(jnp.fft.ifft2(jnp.sqrt(jnp.asarray(lam)) * jnp.fft.fft2(z, axes=(1, 2)), axes=(1, 2)))


def log_spectral_distance(x, target_var):
    v = np.mean(np.abs(np.fft.fft2(np.asarray(x, np.float64), axes=(1, 2))) ** 2, axis=0) / (SHAPE[0] * SHAPE[1])
    return float(np.mean(np.abs(np.log(v / target_var))))


def run(quick, out):
    n = 128 if quick else 512
    nfes = [20, 50, 100] if quick else [20, 50, 100, 200, 500, 1000, 2000]
    lam = spectrum()
    sde = dj.VE()
    score = make_score(sde, lam)
    target = lam + float(sde.sigma(sde.t_min)) ** 2
    images = np.asarray(sample_data(jax.random.key(11), 200, lam))
    pre = preconditioner_from_images(images, alpha=5.0)
    noise_floor = log_spectral_distance(sample_data(jax.random.key(12), n, lam), lam)
    samplers = {
        "pc (reverse diffusion + Langevin, snr 0.16)": PredictorCorrector(predictor="reverse_diffusion"),
        "pds official (α = 5)": PDS(precond=pre, mode="official"),
        "pds marginal-preserving (α = 5)": PDS(precond=pre, mode="marginal_preserving"),
        "pc batch-norm step (score_sde)": PredictorCorrector(predictor="reverse_diffusion", step_size="batch"),
        "pds official, batch-norm step": PDS(precond=pre, mode="official", step_size="batch"),
    }
    results = []
    for label, solver in samplers.items():
        row = []
        for nfe in nfes:
            x = dj.sample(jax.random.key(0), sde, score, solver=solver, nfe=nfe, shape=(n,) + SHAPE, check_finite=False)
            d = log_spectral_distance(x, target) if bool(jnp.all(jnp.isfinite(x))) else float("inf")
            results.append({"sampler": label, "nfe": nfe, "log_spectral_distance": d})
            row.append(d)
        print(f"{label:45s} " + " ".join(f"{v:.3f}" for v in row), flush=True)
    speedups = []
    for base, pds in [
        ("pc (reverse diffusion + Langevin, snr 0.16)", "pds official (α = 5)"),
        ("pc (reverse diffusion + Langevin, snr 0.16)", "pds marginal-preserving (α = 5)"),
        ("pc batch-norm step (score_sde)", "pds official, batch-norm step"),
    ]:
        b = [r for r in results if r["sampler"] == base]
        for r in [r for r in results if r["sampler"] == pds]:
            need = nfe_to_reach(
                [q["nfe"] for q in b], [q["log_spectral_distance"] for q in b], r["log_spectral_distance"]
            )
            speedups.append(
                {
                    "base": base,
                    "pds": pds,
                    "nfe": r["nfe"],
                    "distance": r["log_spectral_distance"],
                    "base_nfe": need,
                    "speedup": need / r["nfe"],
                }
            )
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "bench_pds.json"), "w") as fh:
        json.dump(
            {"nfes": nfes, "n": n, "noise_floor": noise_floor, "results": results, "speedups": speedups}, fh, indent=1
        )
    lines = [
        "# PDS vs PC on a 1/f² Gaussian field (32×32×3, VE, exact score)",
        "",
        f"Log-spectral distance to p_tmin (lower is better; noise floor with {n} exact samples: {noise_floor:.3f}).",
        "",
        "| sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
        "|---|" + "---|" * len(nfes),
    ]
    for label in samplers:
        rr = [r for r in results if r["sampler"] == label]
        lines.append(f"| {label} | " + " | ".join(f"{r['log_spectral_distance']:.3f}" for r in rr) + " |")
    lines += [
        "",
        "| PDS variant | NFE | distance | base | base NFE for that distance | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for s in speedups:
        need = f"> {max(nfes)}" if not np.isfinite(s["base_nfe"]) else f"{s['base_nfe']:.0f}"
        fac = "—" if not np.isfinite(s["speedup"]) else f"{s['speedup']:.2f}×"
        lines.append(f"| {s['pds']} | {s['nfe']} | {s['distance']:.3f} | {s['base']} | {need} | {fac} |")
    with open(os.path.join(out, "bench_pds.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plt.figure(figsize=(7, 5))
    for label in samplers:
        rr = [r for r in results if r["sampler"] == label]
        plt.loglog([r["nfe"] for r in rr], [r["log_spectral_distance"] for r in rr], "o-", label=label)
    plt.axhline(noise_floor, color="k", ls=":", label="noise floor")
    plt.xlabel("NFE")
    plt.ylabel("log-spectral distance")
    plt.legend(fontsize=7)
    plt.tight_layout()
    plt.savefig(os.path.join(out, "bench_pds.png"), dpi=100)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    run(a.quick, a.out)
