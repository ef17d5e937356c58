"""Evaluate a trained run: FID (Inception features) and pixel-space metrics of samples from any solver and NFE.

    python experiments/evaluate.py --workdir runs/digits_edm --solver edm_heun --nfe 35 --num 50000 --weights inception_fid.npz
    python experiments/evaluate.py --workdir runs/digits_edm --sweep --solvers edm_heun,dpmpp_2m,unipc --nfes 5,10,20 --num 2000

Samples are drawn in resumable chunks (``dj.sample_chunked``, under RUN/eval/samples/) from the EMA model at the
run's latest checkpoint, and scored against the run's training data:

* ``fid``: Fréchet Inception Distance with the FID Inception-v3 (``--weights`` or ``$DIFFJAX_INCEPTION``; images
  only). Without weights the row has ``fid: null`` and the reason; nothing is downloaded.
* ``fd_pixels``: the same Fréchet distance on raw pixels (or the data coordinates of a toy set);
* ``sw2_pixels``: sliced Wasserstein-2 on the data coordinates (up to 5000 samples);
* ``precision``, ``recall``: improved precision and recall (k-NN manifolds, ``--pr-k`` = 3) of the Inception
  features of the first ``--pr-num`` (10 000) samples against as many reference images (with FID only).

Reference moments (and features) are computed once per (data set, count, feature extractor + weights digest) and cached under
RUN/eval/ with that provenance. Every (solver, NFE, num, seed, checkpoint) writes one JSON row to
RUN/eval/results.jsonl (a rerun replaces its row); ``--sweep`` also writes RUN/eval/sweep.md and sweep.png
(metric vs NFE per solver).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import diffjax as dj  # noqa: E402
from common import open_run  # noqa: E402
from diffjax import fid  # noqa: E402


def reference_images(source, num: int, batch: int = 500):
    """The first ``num`` examples of the source's deterministic stream, in batches."""
    done = step = 0
    while done < num:
        x = source.batch(step, batch)[0][: num - done]
        done += len(x)
        step += 1
        yield x


def resolve_solver(name: str):
    """(solver, label, fixed NFE or None) for a registered name or a learned solver's .json."""
    if name.endswith(".json"):
        try:
            learned = dj.solvers.load(name)
        except (OSError, ValueError) as e:
            raise SystemExit(str(e)) from None
        return learned, "learned_" + os.path.splitext(os.path.basename(name))[0], learned.nfe_budget
    if not dj.solvers.known(name):
        raise SystemExit(f"unknown solver {name!r}; accepted: {dj.solvers.available()} or a learned solver's .json")
    return name, name, None


def feature_setup(weights: str | None, is_image: bool):
    """(Inception feature function or None, its provenance string, note)."""
    if not is_image:
        return None, None, "toy data: no Inception features (pixel-space metrics only)"
    from diffjax import inception

    path = weights or os.environ.get(inception.WEIGHTS_ENV)
    if not path or not os.path.exists(path):
        note = "FID skipped: " + inception.missing_weights_message(path)
        print(note, file=sys.stderr)
        return None, None, note
    return inception.feature_extractor(path), "inception:" + fid.file_digest(path), ""


def evaluate_one(a, cfg, trainer, train, step, solver_name, nfe, feats, feat_id, note, eval_dir):
    solver, label, fixed = resolve_solver(solver_name)
    if fixed is not None and nfe not in (None, fixed):
        raise SystemExit(f"{solver_name} was fitted for nfe={fixed}; got --nfe {nfe}")
    nfe = fixed or nfe
    shape = (a.num,) + tuple(train.data_shape)
    out_dir = os.path.join(eval_dir, "samples", f"{label}_nfe{nfe}_n{a.num}_seed{a.seed}_ckpt{step}")
    t0 = time.time()
    try:
        files = dj.sample_chunked(jax.random.key(a.seed), trainer.sde, trainer.model(), solver, nfe, shape,
                                  min(a.chunk, a.num), out_dir, progress=not a.quiet, load=False)
    except (ValueError, FloatingPointError) as e:
        raise SystemExit(f"cannot sample with {label!r} at nfe={nfe}: {e}") from None
    seconds = time.time() - t0
    chunks = lambda: (np.load(f) for f in files)
    data_id = f"{cfg['data']['name']}:size{cfg['data'].get('size')}:seed{cfg['train']['seed']}"
    dim = int(np.prod(train.data_shape))
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    ref_pix = fid.cached_reference(os.path.join(eval_dir, f"reference_pixels_n{a.num_ref}.npz"),
                                   {"data": data_id, "n": a.num_ref, "features": "pixels"},
                                   lambda: moments_stream(flat, reference_images(train, a.num_ref), dim))
    row = {"solver": label, "nfe": nfe, "num": a.num, "seed": a.seed, "checkpoint_step": step,
           "diffusion": trainer.sde.name, "sample_seconds": round(seconds, 2)}
    row["fd_pixels"] = fid.fid(moments_stream(flat, chunks(), dim), ref_pix)
    sub = np.concatenate(list(chunks()))[:5000]
    ref_sub = np.concatenate(list(reference_images(train, min(a.num_ref, 5000))))
    row["sw2_pixels"] = float(dj.metrics.sliced_wasserstein(flat(sub), flat(ref_sub), jax.random.key(0)))
    if feats is not None:
        made_by = {"data": data_id, "features": feat_id, "quantize": True}  # provenance of cached reference files
        ref = fid.cached_reference(os.path.join(eval_dir, f"reference_inception_n{a.num_ref}.npz"),
                                   made_by | {"n": a.num_ref},
                                   lambda: fid.moments_of(feats, reference_images(train, a.num_ref),
                                                          batch_size=a.feature_batch, progress=not a.quiet))
        m = min(a.pr_num, a.num, a.num_ref)
        mom, kept = fid.Moments(ref.s.shape[0]), []
        for f in fid.feature_batches(feats, chunks(), a.feature_batch, progress=not a.quiet):  # one pass for both
            mom.add(f)
            if sum(map(len, kept)) < m:
                kept.append(f)
        row["fid"] = fid.fid(mom, ref)
        row["features"] = feat_id
        if m > a.pr_k:
            ref_f = fid.cached_features(
                os.path.join(eval_dir, f"reference_inception_features_n{m}.npz"),
                made_by | {"n": m},
                lambda: np.concatenate(list(fid.feature_batches(feats, reference_images(train, m), a.feature_batch))))
            row["precision"], row["recall"] = dj.metrics.precision_recall(ref_f, np.concatenate(kept)[:m], a.pr_k)
            row["pr_k"], row["pr_num"] = a.pr_k, m
        elif a.pr_num:
            row["precision"] = row["recall"] = None
            row["pr_note"] = f"precision/recall skipped: {m} samples, k-NN manifolds need more than k = {a.pr_k}"
            print(row["pr_note"], file=sys.stderr)
    else:
        row["fid"], row["fid_note"] = None, note
    return row


def moments_stream(transform, batches, dim):
    mom = fid.Moments(dim)
    for b in batches:
        mom.add(transform(b))
    return mom


def write_row(path, row):
    """Append ``row``, replacing an earlier row of the same (solver, nfe, num, seed, checkpoint)."""
    key = lambda r: (r["solver"], r["nfe"], r["num"], r["seed"], r["checkpoint_step"])
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    rows = [r for r in rows if key(r) != key(row)] + [row]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


def write_sweep(eval_dir, rows):
    metric = "fid" if all(r["fid"] is not None for r in rows) else "fd_pixels"
    solvers = sorted({r["solver"] for r in rows})
    nfes = sorted({r["nfe"] for r in rows})
    cell = {(r["solver"], r["nfe"]): r for r in rows}
    lines = [f"# {metric} vs NFE ({rows[0]['num']} samples, checkpoint {rows[0]['checkpoint_step']}, "
             f"{rows[0]['diffusion']})", "", "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for s in solvers:
        lines.append(f"| {s} | " + " | ".join(f"{cell[(s, n)][metric]:.4g}" if (s, n) in cell else "–" for n in nfes) + " |")
    if metric != "fid":
        lines += ["", "FID not computed: " + rows[0].get("fid_note", "")]
    if all(r.get("precision") is not None for r in rows):
        lines += ["", f"precision / recall (k = {rows[0]['pr_k']}, {rows[0]['pr_num']} samples)", "",
                  "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---|" * len(nfes)]
        for s in solvers:
            lines.append(f"| {s} | " + " | ".join(f"{cell[(s, n)]['precision']:.3f} / {cell[(s, n)]['recall']:.3f}"
                                                  if (s, n) in cell else "–" for n in nfes) + " |")
    with open(os.path.join(eval_dir, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for s in solvers:
        pts = sorted((n, cell[(s, n)][metric]) for n in nfes if (s, n) in cell)
        ax.plot(*zip(*pts), "o-", label=s)
    ax.set(xlabel="NFE", ylabel=metric, xscale="log", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(eval_dir, "sweep.png"), dpi=120)
    plt.close(fig)
    return metric


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--solver", default=None, help="a solver name or a learned solver's .json (default: the config's)")
    p.add_argument("--nfe", type=int, default=None)
    p.add_argument("--sweep", action="store_true", help="every solver in --solvers at every NFE in --nfes")
    p.add_argument("--solvers", default="edm_heun,dpmpp_2m,unipc,ipndm")
    p.add_argument("--nfes", default="5,10,20")
    p.add_argument("--num", type=int, default=50000, help="samples per row")
    p.add_argument("--num-ref", type=int, default=None, help="reference examples (default: min(--num, data size))")
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="Inception weights (.npz or .pth; default $DIFFJAX_INCEPTION)")
    p.add_argument("--feature-batch", type=int, default=100, help="images per Inception call")
    p.add_argument("--pr-num", type=int, default=10000, help="samples for precision/recall (0: none)")
    p.add_argument("--pr-k", type=int, default=3, help="k of the k-NN manifolds for precision/recall")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.num < 2 or a.chunk < 1:
        raise SystemExit(f"--num must be >= 2 and --chunk >= 1; got {a.num}, {a.chunk}")
    if a.pr_num < 0 or a.pr_k < 1 or 0 < a.pr_num <= a.pr_k:
        raise SystemExit(f"--pr-num must be 0 (off) or > --pr-k >= 1; got --pr-num {a.pr_num} --pr-k {a.pr_k}")
    try:
        nfes = [int(n) for n in a.nfes.split(",")] if a.sweep else [a.nfe]
    except ValueError:
        raise SystemExit(f"--nfes must be comma-separated integers, got {a.nfes!r}") from None
    cfg, trainer, train, step = open_run(a.workdir)
    solvers = a.solvers.split(",") if a.sweep else [a.solver or cfg["sample"]["solver"]]
    if not a.sweep and a.nfe is None and not solvers[0].endswith(".json"):
        nfes = [cfg["sample"]["nfe"]]
    for s in solvers:  # every name checked before the first sample is drawn
        resolve_solver(s)
    a.num_ref = min(a.num_ref or a.num, len(train))
    eval_dir = os.path.join(a.workdir, "eval")
    os.makedirs(eval_dir, exist_ok=True)
    feats, feat_id, note = feature_setup(a.weights, len(train.data_shape) == 3)
    rows = []
    for s in solvers:
        for n in nfes:
            row = evaluate_one(a, cfg, trainer, train, step, s, n, feats, feat_id, note, eval_dir)
            write_row(os.path.join(eval_dir, "results.jsonl"), row)
            rows.append(row)
            shown = "n/a" if row["fid"] is None else f"{row['fid']:.4g}"
            pr = f"  precision {row['precision']:.3f} recall {row['recall']:.3f}" if row.get("precision") is not None else ""
            print(f"{row['solver']:>12} NFE {row['nfe']:>3}: FID {shown}  FD(pixels) {row['fd_pixels']:.4g}  "
                  f"SW2 {row['sw2_pixels']:.4g}{pr}")
    if a.sweep:
        metric = write_sweep(eval_dir, rows)
        print(f"wrote {eval_dir}/sweep.md and sweep.png ({metric})")


if __name__ == "__main__":
    main()
