"""Pictures of samples, shared by the trainer's evaluations and the entry scripts."""

from __future__ import annotations

import numpy as np


def save_grid(x: np.ndarray, path: str) -> None:
    """Write samples as a PNG: a scatter plot for 2-D points, else an image grid (at most 8×8, [−1, 1] → [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x)
    if x.ndim == 2:
        fig = plt.figure(figsize=(4, 4))
        plt.scatter(x[:, 0], x[:, 1], s=2)
        plt.axis("equal")
    else:
        k = int(np.ceil(np.sqrt(min(len(x), 64))))
        fig, axes = plt.subplots(k, k, figsize=(k, k))
        for i, ax in enumerate(np.ravel(axes)):
            ax.axis("off")
            if i < len(x):
                img = np.clip((x[i] + 1) / 2, 0, 1)
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
