"""Sample a trained run or a published checkpoint with any solver: writes a PNG grid and an .npz of the samples.

    python experiments/sample.py --workdir runs/toy_edm --solver edm_heun --nfe 35 --num 1000 [--label 3 --guidance 1.5]
    python experiments/sample.py --workdir runs/toy_edm --solver runs/toy_edm/solvers/unipc_nfe5.json   # learned
    python experiments/sample.py --pretrained edm-cifar10-32x32-uncond-vp.pkl --solver dpmpp_2m --nfe 10 --num 64
    python experiments/sample.py --pretrained ddpm-cifar10-32/ --solver unipc --nfe 10        # a diffusers folder

``--solver`` is a registered name or the path of a learned solver (``experiments/learn_solver.py``); a learned
solver runs at the NFE it was fitted for. With ``--pretrained`` the outputs go to ``--workdir`` (default: a folder
``<checkpoint>_diffjax`` beside the checkpoint).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import add_model_arguments, open_model  # noqa: E402

import diffjax as dj  # noqa: E402
from diffjax.files import atomic_path, save_npz_atomic  # noqa: E402
from diffjax.plotting import save_grid  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--solver", default=None, help="a solver name or a learned solver's .json")
    p.add_argument("--nfe", type=int, default=None)
    p.add_argument("--num", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, default=None, help="class for a class-conditional model")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale w")
    p.add_argument("--raw", action="store_true", help="use the raw (not EMA) parameters")
    a = p.parse_args(argv)
    for name in ("num", "nfe"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise SystemExit(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.guidance and a.label is None:
        raise SystemExit("--guidance needs --label (classifier-free guidance towards a class)")
    m = open_model(a.workdir, a.pretrained, a.pretrained_config)
    if a.label is not None and not 0 <= a.label < max(m.num_classes, 0):
        raise SystemExit(
            f"--label {a.label}: the model is unconditional"
            if not m.num_classes
            else f"--label must lie in 0…{m.num_classes - 1}, got {a.label}"
        )
    solver = a.solver or m.defaults["solver"]
    nfe = a.nfe or m.defaults["nfe"]
    label = solver
    if solver.endswith(".json"):
        try:
            solver = dj.solvers.load(solver)
        except (OSError, ValueError) as e:
            raise SystemExit(str(e)) from None
        label = "learned_" + os.path.splitext(os.path.basename(a.solver))[0]
        nfe = a.nfe or solver.nfe_budget
    elif not dj.solvers.known(solver):
        raise SystemExit(f"unknown solver {solver!r}; accepted: {dj.solvers.available()} or a learned solver's .json")
    num = a.num or m.defaults["num"]
    labels = None
    if a.label is not None:
        labels = jnp.full((num,), a.label, jnp.int32)
    if a.guidance and labels is not None:
        if m.guided is None:
            raise SystemExit("--guidance needs a model trained with label dropout (a trained run)")
        model = m.guided(labels, a.guidance)
    else:
        model = m.model(labels=labels, raw=a.raw)
    try:
        x = dj.sample(jax.random.key(a.seed), m.sde, model, solver, nfe=nfe, shape=(num,) + tuple(m.data_shape))
    except (ValueError, FloatingPointError) as e:
        raise SystemExit(f"cannot sample with {label!r}: {e}") from None
    x = np.asarray(x)
    if not np.all(np.isfinite(x)):
        raise SystemExit("sampling produced non-finite values; try another solver or more NFE")
    os.makedirs(m.out_dir, exist_ok=True)
    name = (
        f"samples_{label}_nfe{nfe}_seed{a.seed}"
        + (f"_class{a.label}" if a.label is not None else "")
        + (f"_w{a.guidance:g}" if a.guidance else "")
        + ("_raw" if a.raw else "")
    )
    stem = os.path.join(m.out_dir, name)
    save_npz_atomic(
        stem + ".npz",
        samples=x,
        model=m.identity,
        solver=label,
        nfe=nfe,
        seed=a.seed,
        label=-1 if a.label is None else a.label,
        guidance=a.guidance,
    )
    with atomic_path(stem + ".png") as tmp:  # a reader never sees half a picture
        save_grid(x, tmp)
    print(f"wrote {stem}.png and {stem}.npz (model {m.identity})")


if __name__ == "__main__":
    main()
