"""Evaluate a trained run or a published checkpoint: FID (Inception features) and pixel-space metrics of samples
from any solver and NFE.

    python experiments/evaluate.py --workdir runs/digits_edm --solver edm_heun --nfe 35 --num 50000 \
        --weights inception_fid.npz
    python experiments/evaluate.py --workdir runs/digits_edm --sweep --solvers edm_heun,dpmpp_2m,unipc \
        --nfes 5,10,20 --num 2000
    python experiments/evaluate.py --pretrained edm-cifar10-32x32-uncond-vp.pkl --ref cifar10-32x32.npz --sweep \
        --solvers edm_heun,dpmpp_3m,unipc --nfes 4,6,8,10 --num 50000 --weights inception_fid.npz

Samples are drawn in resumable chunks (``dj.sample_chunked``, under OUT/eval/samples/) from the EMA model at the
run's latest checkpoint (or from the published checkpoint), and scored against the reference data — the run's
training data, or ``--ref``: a data set name (toy sets, ``digits``, a prepared TFDS set with ``--data-dir``) or an
``.npz`` holding ``images`` (NHWC, uint8 or floats in [−1, 1]) or published Inception statistics ``mu``/``sigma``
(pytorch-fid's and EDM's ``fid-refs`` format: FID only):

* ``fid``: Fréchet Inception Distance with the FID Inception-v3 (``--weights`` or ``$DIFFJAX_INCEPTION``; images
  only). Without weights the row has ``fid: null`` and the reason; nothing is downloaded.
* ``fd_pixels``: the same Fréchet distance on raw pixels (or the data coordinates of a toy set);
* ``sw2_pixels``: sliced Wasserstein-2 on the data coordinates (up to 5000 samples);
* ``precision``, ``recall``: improved precision and recall (k-NN manifolds, ``--pr-k`` = 3) of the Inception
  features of the first ``--pr-num`` (10 000) samples against as many reference images (with FID only).

Reference moments (and features) are computed once per (data set, count, feature extractor + weights digest) and
cached under
OUT/eval/ with that provenance. Every (solver, NFE, num, seed, model) writes one JSON row to
OUT/eval/results.jsonl (a rerun replaces its row); ``--sweep`` also writes OUT/eval/sweep.md and sweep.png
(metric vs NFE per solver). OUT is the run, or for a published checkpoint ``--workdir`` (default: a folder
``<checkpoint>_diffjax`` beside it).
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
from common import add_model_arguments, open_model  # noqa: E402

import diffjax as dj  # noqa: E402
from diffjax import fid  # noqa: E402
from diffjax.files import FolderInUse, FolderLock, atomic_path, describe_os_error, write_atomic  # noqa: E402


def reference_images(source, num: int, batch: int = 500):
    """The first ``num`` examples of the source's deterministic stream, in batches."""
    done = step = 0
    while done < num:
        x = source.batch(step, batch)[0][: num - done]
        done += len(x)
        step += 1
        yield x


class Reference:
    """The data samples are scored against: a source of examples (pixel metrics, FID, precision/recall) and/or
    published Inception statistics (FID only)."""

    def __init__(self, source=None, stats=None, data_id=None):
        self.source, self.stats, self.data_id = source, stats, data_id

    def __len__(self):
        return len(self.source) if self.source is not None else self.stats.n


def open_reference(spec, data_dir, m):
    """The reference of ``--ref`` (module docstring), or the run's training data."""
    import diffjax.data as dd

    if spec is None:
        if m.reference is None:
            raise SystemExit(
                "a published checkpoint has no training data here: give --ref (a data set name or an .npz "
                "with images or Inception statistics mu/sigma)"
            )
        return Reference(m.reference, None, m.data_id)
    if spec.endswith(".npz"):
        if not os.path.exists(spec):
            raise SystemExit(f"--ref {spec} does not exist")
        with np.load(spec) as f:
            arrays = {k: f[k] for k in f.files}
        if "mu" in arrays and "sigma" in arrays:
            try:
                return Reference(
                    None, fid.Moments.from_stats(arrays["mu"], arrays["sigma"]), "stats:" + fid.file_digest(spec)
                )
            except ValueError as e:
                raise SystemExit(f"--ref {spec}: {e}") from None
        if "images" not in arrays:
            raise SystemExit(f"--ref {spec} holds {sorted(arrays)}; expected 'images' or 'mu' and 'sigma'")
        x = arrays["images"]
        x = x.astype(np.float32) / 127.5 - 1.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if x.ndim != 1 + len(m.data_shape) or x.shape[1:] != tuple(m.data_shape):
            raise SystemExit(f"--ref {spec}: images of shape {x.shape[1:]}, the model makes {tuple(m.data_shape)}")
        if x.min() < -1.01 or x.max() > 1.01:
            raise SystemExit(
                f"--ref {spec}: float images must lie in [-1, 1] (or give uint8), got [{x.min()}, {x.max()}]"
            )
        return Reference(dd.ArraySource(x), None, "images:" + fid.file_digest(spec))
    try:
        src = (
            dd.toy(spec, 20000, seed=0)
            if spec in dd.toy_names()
            else dd.digits(m.data_shape[0])
            if spec == "digits"
            else dd.tfds_source(spec, data_dir=data_dir)
        )
    except (ValueError, OSError, ImportError) as e:
        raise SystemExit(f"--ref {spec}: {e}") from None
    if tuple(src.data_shape) != tuple(m.data_shape):
        raise SystemExit(
            f"--ref {spec}: examples of shape {tuple(src.data_shape)}, the model makes {tuple(m.data_shape)}"
        )
    return Reference(src, None, f"{spec}:{data_dir or ''}")


def resolve_solver(name: str):
    """(solver, label, fixed NFE or None) for a registered name or a learned solver's .json."""
    if name.endswith(".json"):
        try:
            learned = dj.solvers.load(name)
        except (OSError, ValueError) as e:
            raise SystemExit(str(e)) from None
        return learned, "learned_" + os.path.splitext(os.path.basename(name))[0], learned.nfe_budget
    try:
        dj.solvers.get(name)
    except ValueError as e:  # names the close matches and every accepted name
        raise SystemExit(f"{e} or a learned solver's .json") from None
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


def evaluate_one(a, m, ref, solver_name, nfe, feats, feat_id, note, eval_dir):
    solver, label, fixed = resolve_solver(solver_name)
    if fixed is not None and nfe not in (None, fixed):
        raise SystemExit(f"{solver_name} was fitted for nfe={fixed}; got --nfe {nfe}")
    nfe = fixed or nfe
    shape = (a.num,) + tuple(m.data_shape)
    out_dir = os.path.join(eval_dir, "samples", f"{label}_nfe{nfe}_n{a.num}_seed{a.seed}_{m.identity}")
    t0 = time.time()
    try:
        files = dj.sample_chunked(
            jax.random.key(a.seed),
            m.sde,
            m.model(),
            solver,
            nfe,
            shape,
            min(a.chunk, a.num),
            out_dir,
            progress=not a.quiet,
            load=False,
        )
    except (ValueError, FloatingPointError) as e:
        raise SystemExit(f"cannot sample with {label!r} at nfe={nfe}: {e}") from None
    seconds = time.time() - t0
    chunks = lambda: (np.load(f) for f in files)
    dim = int(np.prod(m.data_shape))
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    row = {
        "solver": label,
        "nfe": nfe,
        "num": a.num,
        "seed": a.seed,
        "model": m.identity,
        "diffusion": m.sde.name,
        "sample_seconds": round(seconds, 2),
    }
    if m.step is not None:
        row["checkpoint_step"] = m.step
    if ref.source is not None:
        ref_pix = fid.cached_reference(
            os.path.join(eval_dir, f"reference_pixels_n{a.num_ref}.npz"),
            {"data": ref.data_id, "n": a.num_ref, "features": "pixels"},
            lambda: moments_stream(flat, reference_images(ref.source, a.num_ref), dim),
        )
        row["fd_pixels"] = fid.fid(moments_stream(flat, chunks(), dim), ref_pix)
        sub = np.concatenate(list(chunks()))[:5000]
        ref_sub = np.concatenate(list(reference_images(ref.source, min(a.num_ref, 5000))))
        row["sw2_pixels"] = float(dj.metrics.sliced_wasserstein(flat(sub), flat(ref_sub), jax.random.key(0)))
    else:
        row["fd_pixels"] = row["sw2_pixels"] = None
    if feats is not None:
        made_by = {"data": ref.data_id, "features": feat_id, "quantize": True}  # provenance of cached reference files
        if ref.stats is not None:
            reference = ref.stats
        else:
            reference = fid.cached_reference(
                os.path.join(eval_dir, f"reference_inception_n{a.num_ref}.npz"),
                made_by | {"n": a.num_ref},
                lambda: fid.moments_of(
                    feats, reference_images(ref.source, a.num_ref), batch_size=a.feature_batch, progress=not a.quiet
                ),
            )
        pr_ok = ref.source is not None
        k = min(a.pr_num, a.num, a.num_ref) if pr_ok else 0
        mom, kept = fid.Moments(reference.s.shape[0]), []
        for f in fid.feature_batches(feats, chunks(), a.feature_batch, progress=not a.quiet):  # one pass for both
            mom.add(f)
            if sum(map(len, kept)) < k:
                kept.append(f)
        row["fid"] = fid.fid(mom, reference)
        row["features"] = feat_id
        if k > a.pr_k:
            ref_f = fid.cached_features(
                os.path.join(eval_dir, f"reference_inception_features_n{k}.npz"),
                made_by | {"n": k},
                lambda: np.concatenate(
                    list(fid.feature_batches(feats, reference_images(ref.source, k), a.feature_batch))
                ),
            )
            row["precision"], row["recall"] = dj.metrics.precision_recall(ref_f, np.concatenate(kept)[:k], a.pr_k)
            row["pr_k"], row["pr_num"] = a.pr_k, k
        elif a.pr_num:
            row["precision"] = row["recall"] = None
            row["pr_note"] = (
                f"precision/recall skipped: {k} samples, k-NN manifolds need more than k = {a.pr_k}"
                if pr_ok
                else "precision/recall skipped: the reference is statistics only (no images)"
            )
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
    key = lambda r: (r["solver"], r["nfe"], r["num"], r["seed"], r.get("model", r.get("checkpoint_step")))
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    rows = [r for r in rows if key(r) != key(row)] + [row]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_sweep(eval_dir, rows):
    metric = "fid" if all(r["fid"] is not None for r in rows) else "fd_pixels"
    if metric == "fd_pixels" and any(r["fd_pixels"] is None for r in rows):
        raise SystemExit("no metric to tabulate: FID needs Inception weights when the reference is statistics only")
    solvers = sorted({r["solver"] for r in rows})
    nfes = sorted({r["nfe"] for r in rows})
    cell = {(r["solver"], r["nfe"]): r for r in rows}
    lines = [
        f"# {metric} vs NFE ({rows[0]['num']} samples, model {rows[0]['model']}, {rows[0]['diffusion']})",
        "",
        "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
        "|---|" + "---|" * len(nfes),
    ]
    for s in solvers:
        lines.append(
            f"| {s} | " + " | ".join(f"{cell[(s, n)][metric]:.4g}" if (s, n) in cell else "–" for n in nfes) + " |"
        )
    if metric != "fid":
        lines += ["", "FID not computed: " + rows[0].get("fid_note", "")]
    if all(r.get("precision") is not None for r in rows):
        lines += [
            "",
            f"precision / recall (k = {rows[0]['pr_k']}, {rows[0]['pr_num']} samples)",
            "",
            "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
            "|---|" + "---|" * len(nfes),
        ]
        for s in solvers:
            lines.append(
                f"| {s} | "
                + " | ".join(
                    f"{cell[(s, n)]['precision']:.3f} / {cell[(s, n)]['recall']:.3f}" if (s, n) in cell else "–"
                    for n in nfes
                )
                + " |"
            )
    write_atomic(os.path.join(eval_dir, "sweep.md"), "\n".join(lines) + "\n")
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
    with atomic_path(os.path.join(eval_dir, "sweep.png")) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return metric


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument(
        "--ref",
        default=None,
        help="reference data: a data set name or an .npz of images or of Inception "
        "statistics mu/sigma (default: a run's training data)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data folder for --ref NAME")
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
    m = open_model(a.workdir, a.pretrained, a.pretrained_config)
    solvers = a.solvers.split(",") if a.sweep else [a.solver or m.defaults["solver"]]
    if not a.sweep and a.nfe is None and not solvers[0].endswith(".json"):
        nfes = [m.defaults["nfe"]]
    for s in solvers:  # every name checked before the first sample is drawn
        resolve_solver(s)
    ref = open_reference(a.ref, a.data_dir, m)
    a.num_ref = min(a.num_ref or a.num, len(ref))
    eval_dir = os.path.join(m.out_dir, "eval")
    try:  # one evaluation writes a folder at a time (results.jsonl, cached references, sample chunks)
        FolderLock(eval_dir, "evaluation").acquire()
    except (FolderInUse, OSError) as e:
        raise SystemExit(str(e) if isinstance(e, FolderInUse) else describe_os_error(e, eval_dir)) from None
    feats, feat_id, note = feature_setup(a.weights, len(m.data_shape) == 3)
    if feats is None and ref.source is None:
        raise SystemExit(f"--ref {a.ref} holds Inception statistics only, which need the Inception weights: {note}")
    rows = []
    for s in solvers:
        for n in nfes:
            row = evaluate_one(a, m, ref, s, n, feats, feat_id, note, eval_dir)
            write_row(os.path.join(eval_dir, "results.jsonl"), row)
            rows.append(row)
            shown = "n/a" if row["fid"] is None else f"{row['fid']:.4g}"
            pr = (
                f"  precision {row['precision']:.3f} recall {row['recall']:.3f}"
                if row.get("precision") is not None
                else ""
            )
            pix = (
                f"  FD(pixels) {row['fd_pixels']:.4g}  SW2 {row['sw2_pixels']:.4g}"
                if row["fd_pixels"] is not None
                else ""
            )
            print(f"{row['solver']:>12} NFE {row['nfe']:>3}: FID {shown}{pix}{pr}")
    if a.sweep:
        metric = write_sweep(eval_dir, rows)
        print(f"wrote {eval_dir}/sweep.md and sweep.png ({metric})")


if __name__ == "__main__":
    main()
