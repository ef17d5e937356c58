"""Models: networks (MLP, DDPM++/NCSN++ UNet, ADM, diffusers' UNet2DModel, DLG's noise classifier), a registry of them,
their preconditioning, and loaders of published checkpoints (:mod:`.pretrained`)."""

from .adm import ADMUNet, adm_imagenet64
from .classifier import NoiseLevelCNN, NoiseLevelMLP
from .diffusers_unet import DiffusersUNet2D
from .mlp import MLP
from .precond import guided, precondition
from .pretrained import Pretrained, load_pretrained
from .registry import available as available_networks
from .registry import build as build_network
from .registry import register as register_network
from .unet import UNet, count_params, ddpmpp_cifar10, ncsnpp_cifar10

__all__ = [
    "MLP",
    "UNet",
    "ddpmpp_cifar10",
    "ncsnpp_cifar10",
    "ADMUNet",
    "adm_imagenet64",
    "DiffusersUNet2D",
    "Pretrained",
    "load_pretrained",
    "count_params",
    "precondition",
    "guided",
    "NoiseLevelCNN",
    "NoiseLevelMLP",
    "available_networks",
    "build_network",
    "register_network",
]
