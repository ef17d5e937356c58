"""Why VP-FDM trains badly at ``make bench-fdm``'s scale: the network input's scale, tested by changing only it.

VP-FDM feeds the network ``c_in x̃ = s_F(σ) x̃`` (FDM's preconditioning keeps VP's ``c_skip = 1``, ``c_out = −σ``
but replaces VP's ``c_in = 1/√(σ² + 1)`` by the momentum factor). The input's standard deviation is then about
``s_F σ``: ≈ σ up to σ ≈ 10, ≈ 25 near σ = 40, 1.9 at σ = 80 and 6e-6 at VP's σ_max = 152, while the ε-form output
must reproduce the noise to a precision ≈ σ_data/σ. This probe trains bench_fdm's VP-FDM arm (one seed, the same
budget) with one change, ``c_in = s_F(σ)/√(σ² + 1)`` — VP's normalisation kept on top of FDM's factor — and writes
the held-out loss per σ and the Fréchet distance to ``results/fdm_vp_input_probe.json``.

    python experiments/fdm_vp_input_probe.py      # ≈ 3 min alone on 2 cores
"""

from __future__ import annotations

import json
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_fdm  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import diffjax.data as dd  # noqa: E402
import diffjax.diffusions.recipes as recipes  # noqa: E402

_official = recipes.fdm_preconditioning


def normalised_input(sde, sigma, base_recipe=None):
    """FDM's preconditioning with VP's input normalisation kept: ``c_in = s_F/√(σ² + 1)``."""
    c_skip, c_out, c_in, c_noise = _official(sde, sigma, base_recipe)
    return c_skip, c_out, c_in / jnp.sqrt(jnp.asarray(sigma) ** 2 + 1.0), c_noise


def main():
    recipes.fdm_preconditioning = normalised_input  # FDMRecipe.apply looks it up at call time
    a = types.SimpleNamespace(
        size=8, channels=16, blocks=1, batch=128, steps=1000, eval_every=500, lr=2e-3, warmup=100, samples=2000
    )
    train, held = dd.digits(8).split(300)
    rows = bench_fdm.run_one("vp-fdm", 0, a, train, held.x)
    out = os.path.join(bench_fdm.RESULTS, "fdm_vp_input_probe.json")
    with open(out, "w") as f:
        json.dump({"change": "c_in = s_F / sqrt(sigma^2 + 1)", "sigmas": bench_fdm.SIGMAS.tolist(), "rows": rows}, f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
