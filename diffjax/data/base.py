"""The batch contract every data source keeps: ``batch(step, batch_size, process_index, process_count)``.

Batch ``step`` holds the examples ``step·B … (step+1)·B − 1`` of an endless stream of seeded per-epoch
permutations of the data set; process ``p`` of ``P`` gets the ``p``-th slice of ``B/P``. So a batch is a pure function
of its arguments (training resumes exactly from a step count) and the global batch does not depend on the number of
processes. A source subclasses :class:`IndexedSource` and gives ``__len__`` and ``examples(indices)``.
"""

from __future__ import annotations

import numpy as np


def shuffled_indices(n: int, seed: int, start: int, count: int) -> np.ndarray:
    """Positions ``start … start+count−1`` of the endless stream of seeded per-epoch permutations of ``range(n)``."""
    out, pos = [], start
    while len(out) < count:
        epoch, off = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(count - len(out), n - off)
        out.extend(perm[off : off + take])
        pos += take
    return np.asarray(out, np.int64)


def random_flip(x: np.ndarray, seed: int, step: int, batch_size: int, process_index: int) -> np.ndarray:
    """Mirror images of this process's slice left-right with probability ½; the mask is drawn for the whole
    global batch ``step`` from ``(seed, step)``, so it does not depend on the number of processes."""
    local = len(x)
    mask = np.random.default_rng([seed, step, 7]).random(batch_size)[process_index * local :][:local] < 0.5
    return np.where(mask[:, None, None, None], x[:, :, ::-1], x)


class IndexedSource:
    """Deterministic, resumable, process-sharded batches from random access by index (module docstring).

    Subclasses (dataclasses with ``seed`` and ``flip`` fields) give ``__len__`` and ``examples(indices) ->
    (x float32 (k, *data_shape), labels int32 (k,) or None)``."""

    seed: int = 0
    flip: bool = False

    def examples(self, indices: np.ndarray):
        """``(x, labels)`` of the examples at ``indices`` (given by subclasses)."""
        raise NotImplementedError

    def batch(self, step: int, batch_size: int, process_index: int = 0, process_count: int = 1):
        """The ``process_index``-th slice of global batch ``step``."""
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
        local = batch_size // process_count
        idx = shuffled_indices(len(self), self.seed, step * batch_size + process_index * local, local)
        x, labels = self.examples(idx)
        if self.flip and x.ndim == 4:
            x = random_flip(x, self.seed, step, batch_size, process_index)
        return x, labels
