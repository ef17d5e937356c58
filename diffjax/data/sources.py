"""In-memory data sources: 2-D toy sets, scikit-learn digits, and any array."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from .base import IndexedSource, random_flip, shuffled_indices  # noqa: F401  (re-exported)


@dataclasses.dataclass(frozen=True)
class ArraySource(IndexedSource):
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

    def examples(self, indices):
        """The examples at ``indices`` (float32) and their labels (int32 or None)."""
        return self.x[indices].astype(np.float32), (
            None if self.labels is None else self.labels[indices].astype(np.int32)
        )

    def split(self, holdout: int) -> tuple["ArraySource", "ArraySource"]:
        """(train, held-out) with the last ``holdout`` examples of a fixed permutation held out."""
        if not 0 < holdout < len(self.x):
            raise ValueError(f"holdout must be in (0, {len(self.x)}), got {holdout}")
        perm = np.random.default_rng([self.seed, 12345]).permutation(len(self.x))
        tr, ho = perm[:-holdout], perm[-holdout:]
        lab = lambda i: None if self.labels is None else self.labels[i]
        return (
            dataclasses.replace(self, x=self.x[tr], labels=lab(tr)),
            dataclasses.replace(self, x=self.x[ho], labels=lab(ho), flip=False),
        )


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
