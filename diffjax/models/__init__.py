"""Models and their parameterizations."""
from .parameterization import Model, as_model, edm_denoiser, edm_preconditioning, fdm_preconditioning

__all__ = ["Model", "as_model", "edm_denoiser", "edm_preconditioning", "fdm_preconditioning"]
