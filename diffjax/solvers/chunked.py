"""Sampling in resumable chunks on disk (for counts beyond device memory, e.g. 50 k samples for FID).

The folder holds ``manifest.json`` (what the run is: diffusion, solver, NFE, key, shape, chunk size, options, and
the *model's identity* — a SHA-256 of its weights and structure, :func:`diffjax.files.tree_digest`) and
``chunk_XXXXX.npy`` files, each written atomically with its SHA-256 beside it. A rerun of the same run skips the
chunks on disk whose checksum verifies and recomputes the others; a folder holding another run — another model
included — is refused with the fields that differ. One process writes a folder at a time
(:class:`diffjax.files.FolderLock`): a second one is refused at once.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from ..diffusions.base import LinearDiffusion
from ..files import FolderLock, file_digest, save_npy_atomic, tree_digest, write_atomic
from . import registry
from .driver import sample


def manifest_of(key, sde, model, solver, nfe, shape, chunk, options) -> dict:
    """What identifies a chunked sampling run (its ``manifest.json``)."""
    from .. import __version__

    return {
        "diffusion": repr(sde),
        "solver": repr(registry.get(solver)),
        "nfe": int(nfe),
        "shape": [int(d) for d in shape],
        "chunk": int(chunk),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "model": tree_digest(model),
        "options": {k: repr(v) for k, v in sorted(options.items())},
        "diffjax": __version__,
    }


def sample_chunked(
    key: jax.Array,
    sde: LinearDiffusion,
    model: Any,
    solver: Any,
    nfe: int,
    shape: tuple[int, ...],
    chunk: int,
    out_dir: str,
    progress: bool = True,
    load: bool = True,
    **kw,
) -> Any:
    """Draw ``shape[0]`` samples in chunks of ``chunk``, streaming each to ``out_dir`` (module docstring).

    Sample b uses key ``fold_in(key, b)`` exactly as in one :func:`~diffjax.sample` call: the samples equal the
    one-shot ones up to float32 round-off of batched operations (a few 1e-4 at most on the test bed; exact when the
    chunk size equals the batch). Every chunk is verified again when loaded. Returns the concatenated samples
    (``load``) or the list of chunk files. Extra keywords go to :func:`~diffjax.sample`. Raises ValueError for a
    folder of another run (or model), :class:`~diffjax.files.FolderInUse` while another process writes it.
    """
    if chunk < 1 or len(shape) < 2 or shape[0] < 1:
        raise ValueError(f"need chunk >= 1 and shape (N >= 1, *data_shape); got chunk={chunk}, shape={shape}")
    with FolderLock(out_dir, "chunked sampling"):
        paths = _sample_into(key, sde, model, solver, nfe, tuple(shape), int(chunk), out_dir, progress, kw)
    if not load:
        return paths
    parts = []
    for p in paths:
        if not _verified(p):
            raise ValueError(f"{p!r} does not match its checksum (altered since it was written); delete it and rerun")
        parts.append(np.load(p))
    out = np.concatenate(parts)
    if out.shape[0] != shape[0]:
        raise ValueError(f"{out_dir!r} holds chunks of another run ({out.shape[0]} samples, expected {shape[0]})")
    return out


def _verified(path: str) -> bool:
    side = path[:-4] + ".sha256"
    return os.path.exists(path) and os.path.exists(side) and open(side).read().strip() == file_digest(path)


def _sample_into(key, sde, model, solver, nfe, shape, chunk, out_dir, progress, kw):
    total = shape[0]
    manifest = manifest_of(key, sde, model, solver, nfe, shape, chunk, kw)
    mpath = os.path.join(out_dir, "manifest.json")
    if os.path.exists(mpath):
        try:
            with open(mpath) as fh:
                old = json.load(fh)
        except (OSError, ValueError):
            old = {}
        diff = [k for k in manifest if k != "diffjax" and old.get(k) != manifest[k]]
        if diff:
            what = {"model": "model (its weights or structure)"}
            raise ValueError(
                f"{out_dir!r} holds another sampling run (differs in {', '.join(what.get(k, k) for k in diff)}: "
                + "; ".join(f"{k}: {str(old.get(k))[:80]!r} there, {str(manifest[k])[:80]!r} now" for k in diff)
                + "); use a new out_dir or delete that one"
            )
    else:
        if any(f.startswith("chunk_") for f in os.listdir(out_dir)):
            raise ValueError(
                f"{out_dir!r} holds chunk files but no manifest.json: not a run of this call; "
                "use a new out_dir or delete them"
            )
        write_atomic(mpath, json.dumps(manifest, indent=1))
    # plain calls: the compiled sampler is cached (sample_offset is an argument), so chunks and reruns reuse it
    run = lambda k, off, n: sample(
        k, sde, model, solver, nfe=nfe, shape=(n,) + tuple(shape[1:]), sample_offset=off, **kw
    )
    starts = list(range(0, total, chunk))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), desc="chunks", dynamic_ncols=True)
    paths = []
    for i, start in enumerate(starts):
        path = os.path.join(out_dir, f"chunk_{i:05d}.npy")
        if not _verified(path):
            x = np.asarray(run(key, start, min(chunk, total - start)))
            if not np.all(np.isfinite(x)):
                raise FloatingPointError(f"chunk {i} contains non-finite samples")
            # the checksum file is written after the chunk: a chunk without a matching checksum is recomputed
            digest = save_npy_atomic(path, x)
            write_atomic(path[:-4] + ".sha256", digest)
        paths.append(path)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return paths
