"""Where a learned NFE-10 solver's error on the digits mixture comes from: the paths that change component.

Fits iPNDM at NFE 10 on digits / EDM with ``what="grid+coefs+history"`` (key 1, as ``bench_learned``), and with
LD3's relaxed teacher (``loss="soft"``, keys 1 and 2), samples ``bench_learned``'s 1000 evaluation draws and splits
the pathwise RMSE into the paths whose most likely mixture component differs from the float64 reference's ("mode
flips": each one's path error) and the rest; the teacher ``learn`` uses (UniPC, 100 evaluations, float32) is
measured the same way.

    python experiments/learned_flips.py [--out experiments/results]   → learned_flips.json
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from bench_learned import metrics, problems
from benchutil import prior_and_reference

import diffjax as dj


def split(data, sde, x, ref):
    """bench_learned's metrics plus the RMSE without the flipped paths and each flipped path's error."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    comp = lambda v: np.asarray(jnp.argmax(data._per_component(sde, jnp.asarray(v, jnp.float32), sde.t_min)[0], axis=1))
    per_path = np.sqrt(np.mean((x - ref).reshape(len(x), -1) ** 2, axis=1))
    flipped = comp(x) != comp(ref)
    return {
        **metrics(data, sde, x, ref),
        "rmse_without_flips": float(np.sqrt(np.mean(per_path[~flipped] ** 2))),
        "flipped_path_errors": sorted(float(v) for v in per_path[flipped]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    sde, (data, n) = dj.EDM(), problems()["digits"]
    y, ref = prior_and_reference(sde, data, n, jax.random.key(0))
    score = data.score_fn(sde)
    rows = [
        {
            "solver": "unipc",
            "nfe": 100,
            "role": "learn's teacher",
            **split(data, sde, dj.sample(jax.random.key(0), sde, score, "unipc", nfe=100, init=y), ref),
        }
    ]
    for loss, key in (("l2", 1), ("soft", 1), ("soft", 2)):
        fit = dj.solvers.learn(
            jax.random.key(key),
            sde,
            score,
            "ipndm",
            10,
            data.data_shape,
            what="grid+coefs+history",
            loss=loss,
            progress=False,
        )
        x = dj.sample(jax.random.key(0), sde, score, fit, nfe=10, init=y)
        rows.append(
            {
                "solver": "ipndm",
                "nfe": 10,
                "what": fit.info["what"],
                "loss": loss,
                "key": key,
                **split(data, sde, x, ref),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    with open(os.path.join(args.out, "learned_flips.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
