"""Models: networks (MLP, DDPM++ UNet, DLG's noise classifier), a registry of them, and their preconditioning."""
from .classifier import NoiseLevelCNN, NoiseLevelMLP
from .mlp import MLP
from ..diffusions.recipes import edm_preconditioning, fdm_preconditioning
from ..prediction import Model, as_model, edm_denoiser
from .precond import guided, precondition
from .registry import available as available_networks
from .registry import build as build_network
from .registry import register as register_network
from .unet import UNet, count_params, ddpmpp_cifar10

__all__ = ["Model", "as_model", "edm_denoiser", "edm_preconditioning", "fdm_preconditioning", "MLP", "UNet",
           "ddpmpp_cifar10", "count_params", "precondition", "guided", "NoiseLevelCNN", "NoiseLevelMLP", "available_networks", "build_network",
           "register_network"]
