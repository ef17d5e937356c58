"""In-memory data sources: 2-D toy sets, scikit-learn digits, and any array."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np


def shuffled_indices(n: int, seed: int, start: int, count: int) -> np.ndarray:
    """Positions ``start … start+count−1`` of the endless stream of seeded per-epoch permutations of ``range(n)``."""
    out, pos = [], start
    while len(out) < count:
        epoch, off = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(count - len(out), n - off)
        out.extend(perm[off:off + take])
        pos += take
    return np.asarray(out, np.int64)


def random_flip(x: np.ndarray, seed: int, step: int, batch_size: int, process_index: int) -> np.ndarray:
    """Mirror images of this process's slice left-right with probability ½; the mask is drawn for the whole
    global batch ``step`` from ``(seed, step)``, so it does not depend on the number of processes."""
    local = len(x)
    mask = np.random.default_rng([seed, step, 7]).random(batch_size)[process_index * local:][:local] < 0.5
    return np.where(mask[:, None, None, None], x[:, :, ::-1], x)


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Batches from an in-memory array, epoch by epoch in a seeded permutation (so batch k is a pure function of
    k and the seed). ``flip`` mirrors images left-right with probability ½ (also seeded per step). Data are
    expected already scaled (images in [−1, 1])."""

    x: np.ndarray
    labels: np.ndarray | None = None
    seed: int = 0
    flip: bool = False
    num_classes: int = 0

    def __post_init__(self):
        if self.x.ndim < 2 or len(self.x) < 1:
            raise ValueError(f"data must have shape (N >= 1, *data_shape), got {self.x.shape}")
        if not np.all(np.isfinite(self.x)):
            raise ValueError("data contain non-finite values")
        if self.labels is not None and len(self.labels) != len(self.x):
            raise ValueError(f"{len(self.labels)} labels for {len(self.x)} examples")

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, step: int, batch_size: int, process_index: int = 0, process_count: int = 1):
        """The ``process_index``-th slice of global batch ``step`` (examples ``step·B … (step+1)·B − 1`` of the
        shuffled stream)."""
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
        local = batch_size // process_count
        idx = shuffled_indices(len(self.x), self.seed, step * batch_size + process_index * local, local)
        x = self.x[idx]
        if self.flip and x.ndim == 4:
            x = random_flip(x, self.seed, step, batch_size, process_index)
        return x.astype(np.float32), (None if self.labels is None else self.labels[idx].astype(np.int32))

    def split(self, holdout: int) -> tuple["ArraySource", "ArraySource"]:
        """(train, held-out) with the last ``holdout`` examples of a fixed permutation held out."""
        if not 0 < holdout < len(self.x):
            raise ValueError(f"holdout must be in (0, {len(self.x)}), got {holdout}")
        perm = np.random.default_rng([self.seed, 12345]).permutation(len(self.x))
        tr, ho = perm[:-holdout], perm[-holdout:]
        lab = lambda i: None if self.labels is None else self.labels[i]
        return (dataclasses.replace(self, x=self.x[tr], labels=lab(tr)),
                dataclasses.replace(self, x=self.x[ho], labels=lab(ho), flip=False))


def _toy(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "ring":
        from ..testbed import ring

        return np.asarray(ring().sample(jax.random.key(int(rng.integers(2**31))), n))
    if name == "moons":
        from sklearn.datasets import make_moons

        x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31)))
        return (x - [0.5, 0.25]) / [1.0, 0.5]
    if name == "checkerboard":
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.uniform(0, 1, n) + rng.integers(0, 2, n) * 2 - 2 + (np.floor(x1) % 2)
        return np.stack([x1, x2], 1) / 1.15
    if name == "swiss_roll":
        from sklearn.datasets import make_swiss_roll

        x, _ = make_swiss_roll(n, noise=0.5, random_state=int(rng.integers(2**31)))
        return x[:, [0, 2]] / 7.5
    raise ValueError(f"unknown toy data set {name!r}; accepted: {toy_names()}")


def toy_names() -> list[str]:
    """Names accepted by :func:`toy`."""
    return ["ring", "moons", "checkerboard", "swiss_roll"]


def toy(name: str, n: int = 20000, seed: int = 0) -> ArraySource:
    """A 2-D toy set of ``n`` points (roughly unit scale)."""
    x = _toy(name, n, np.random.default_rng(seed))
    return ArraySource(np.asarray(x, np.float32), seed=seed)


def digits(size: int = 8, seed: int = 0, flip: bool = False) -> ArraySource:
    """scikit-learn's 1797 digits in [−1, 1], ``(N, size, size, 1)`` (8, or zero-padded — i.e. −1 — to 16/32),
    with their class labels (10 classes)."""
    from ..testbed.mixtures import digits_data

    x, y = digits_data()
    if size not in (8, 16, 32):
        raise ValueError(f"digits size must be 8, 16 or 32, got {size}")
    if size > 8:
        pad = (size - 8) // 2
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-1.0)
    return ArraySource(x.astype(np.float32), np.asarray(y, np.int32), seed=seed, flip=flip, num_classes=10)


def get(name: str, **kw) -> Any:
    """A source by name: a toy set, 'digits', or 'tfds:<name>' (needs ``data_dir=``)."""
    if name in toy_names():
        return toy(name, **kw)
    if name == "digits":
        return digits(**kw)
    if name.startswith("tfds:"):
        from .tfds import tfds_source

        return tfds_source(name[5:], **kw)
    raise ValueError(f"unknown data set {name!r}; accepted: {toy_names() + ['digits', 'tfds:<name>']}")
