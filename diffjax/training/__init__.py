"""Training: losses, the noise-level classifier of DLG, and the trainer."""
from .noise_classifier import noise_level_loss, train_noise_classifier

__all__ = ["noise_level_loss", "train_noise_classifier"]
