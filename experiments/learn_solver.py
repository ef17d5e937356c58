"""Fit a discretization (time grid + solver coefficients) to a trained run or a published checkpoint and store it.

    python experiments/learn_solver.py --workdir runs/digits_edm --solver unipc --nfe 5
    python experiments/sample.py --workdir runs/digits_edm --solver runs/digits_edm/solvers/unipc_nfe5.json
    python experiments/learn_solver.py --pretrained edm-cifar10-32x32-uncond-vp.pkl --solver dpmpp_3m --nfe 5 \
        --teacher dpmpp_3m:100      # -> edm-cifar10-32x32-uncond-vp_diffjax/solvers/dpmpp_3m_nfe5.json

Fits on prior draws (no data needed) against a teacher (default: the adaptive diffrax reference; ``--teacher
unipc:100`` for a cheaper one), selects on held-out draws, and writes ``WORKDIR/solvers/<solver>_nfe<N>.json``
(with the held-out errors before and after). Uses the EMA parameters of the latest checkpoint; for a published
checkpoint, OUT/solvers/ where OUT is --workdir or the folder ``<checkpoint>_diffjax`` beside it.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
from common import add_model_arguments, open_model  # noqa: E402

import diffjax as dj  # noqa: E402


def parse_teacher(text: str):
    if text in ("auto", "reference"):
        return text
    solver, sep, nfe = text.partition(":")
    if not sep or not nfe.isdigit():
        raise SystemExit(f"--teacher must be 'auto', 'reference' or SOLVER:NFE (e.g. unipc:100), got {text!r}")
    return (solver, int(nfe))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--solver", required=True, help="base solver, e.g. unipc, ipndm, dpmpp_3m, edm_heun")
    p.add_argument("--nfe", type=int, required=True)
    p.add_argument(
        "--what",
        default=None,
        help="parts to fit joined by '+': grid, coefs, history, times (default: learn's, by solver and NFE)",
    )
    p.add_argument("--teacher", default="auto", help="'auto', 'reference' or SOLVER:NFE")
    p.add_argument("--num-fit", type=int, default=512)
    p.add_argument("--num-heldout", type=int, default=512)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--init-grid", default="optimized", choices=["base", "optimized"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output JSON (default WORKDIR/solvers/<solver>_nfe<N>.json)")
    a = p.parse_args(argv)
    if not dj.solvers.known(a.solver):  # canonical names and family defaults (unipc)
        raise SystemExit(f"unknown solver {a.solver!r}; accepted: {dj.solvers.available()}")
    teacher = parse_teacher(a.teacher)
    if a.what is not None:
        from diffjax.solvers.learn import parse_what

        try:
            parse_what(a.what)
        except ValueError as e:
            raise SystemExit(f"--what: {e}") from None
    m = open_model(a.workdir, a.pretrained, a.pretrained_config)
    try:
        learned = dj.solvers.learn(
            jax.random.key(a.seed),
            m.sde,
            m.model(),
            a.solver,
            a.nfe,
            tuple(m.data_shape),
            what=a.what,
            teacher=teacher,
            num_fit=a.num_fit,
            num_heldout=a.num_heldout,
            steps=a.steps,
            init_grid=a.init_grid,
        )
    except ValueError as e:
        raise SystemExit(f"cannot learn {a.solver!r} at nfe={a.nfe}: {e}") from None
    learned.info["model"] = m.identity
    if m.step is not None:
        learned.info["checkpoint_step"] = m.step
    out = a.out or os.path.join(m.out_dir, "solvers", f"{a.solver}_nfe{a.nfe}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    learned.save(out)
    i = learned.info
    print(
        f"held-out pathwise RMSE vs the teacher: {i['heldout_rmse_base']:.4g} ({a.solver}, default grid) -> "
        f"{i['heldout_rmse']:.4g} (learned){' [' + i['fallback'] + ']' if 'fallback' in i else ''}"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
