"""Training: per-diffusion losses, the trainer (EMA, orbax checkpoints, data parallel), DLG's classifier."""

from .losses import LossConfig, diffusion_loss, fdm_weight_cap
from .noise_classifier import noise_level_loss, train_noise_classifier
from .trainer import TrainConfig, Trainer, make_optimizer

__all__ = [
    "LossConfig",
    "diffusion_loss",
    "fdm_weight_cap",
    "noise_level_loss",
    "train_noise_classifier",
    "TrainConfig",
    "Trainer",
    "make_optimizer",
]
