"""Exact data distributions with closed-form scores for every linear diffusion."""

from .gmm import GaussianMixture
from .mixtures import digits, digits_data, digits_dct, ring, spectral

__all__ = ["GaussianMixture", "ring", "digits", "digits_data", "digits_dct", "spectral"]
