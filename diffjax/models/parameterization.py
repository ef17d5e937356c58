"""Deprecated location (until the next release): the prediction kinds and their conversions now live in
:mod:`diffjax.prediction`, and the preconditionings in :mod:`diffjax.diffusions.recipes`."""

from ..diffusions.recipes import edm_preconditioning, fdm_preconditioning  # noqa: F401
from ..prediction import ALL_KINDS, KINDS, PAIR_KINDS, Model, as_model, edm_denoiser  # noqa: F401
