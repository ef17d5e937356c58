"""The orthonormal 2-D DCT basis over an image's ``(H, W)`` axes, per channel: ``y = Vᵀx`` with
``V`` the DCT-II basis (``norm="ortho"``), the basis in which blurring is diagonal (Hoogeboom & Salimans 2022)."""

from __future__ import annotations

from jax.scipy.fft import dctn, idctn


class DCTBasis:
    """Mixin for diffusions with per-frequency 1×1 blocks: block form is ``(B, H, W, C, 1)`` in the DCT basis.

    Subclasses give ``image_shape = (H, W, C)``; ``C = 1`` accepts any number of channels (coefficients shared by
    the channels)."""

    basis_name = "dct"  # the test bed's name for this basis (GaussianMixture(..., basis="dct"))

    @property
    def image_shape(self) -> tuple:
        """The image shape ``(H, W, C)`` the coefficients are declared on."""
        raise NotImplementedError

    @property
    def coef_ndim(self) -> int:
        """Coefficients vary over the three image axes (per frequency and channel)."""
        return 3

    def check_state(self, y) -> None:
        """Raise ValueError when ``y`` is not a batch of images of this diffusion."""
        super().check_state(y)
        self.check_data_shape(y.shape)

    def check_data_shape(self, shape: tuple) -> None:
        """Raise ValueError unless ``shape`` ends with ``(H, W, C)`` (any C when ``C = 1``)."""
        h, w, c = self.image_shape
        got = tuple(shape)[-3:]
        if len(got) < 3 or got[:2] != (h, w) or c not in (1, got[2]):
            raise ValueError(
                f"{self.name} was built for images of shape {self.image_shape}, got an array of shape {tuple(shape)}"
            )

    def to_blocks(self, y):
        """Pixels → DCT coefficients ``Vᵀx`` (orthonormal, over H and W), block form ``(…, 1)``."""
        self.check_data_shape(y.shape)
        return dctn(y, axes=(-3, -2), norm="ortho")[..., None]

    def from_blocks(self, yb):
        """DCT coefficients → pixels ``V y``."""
        return idctn(yb[..., 0], axes=(-3, -2), norm="ortho")
