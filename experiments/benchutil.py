"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import numpy as np


def nfe_to_reach(nfes, errs, target) -> float:
    """Smallest NFE (log-log interpolation) at which an error curve first reaches ``target``; inf if never."""
    nfes, errs = np.asarray(nfes, float), np.asarray(errs, float)
    for i in range(len(nfes)):
        if errs[i] <= target:
            if i == 0:
                return float(nfes[0])
            x0, x1, y0, y1 = np.log(nfes[i - 1]), np.log(nfes[i]), np.log(errs[i - 1]), np.log(errs[i])
            return float(np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0)))
    return float("inf")
