"""The paper's colour augmentation and test patches (§4.1), and normalisation, on uint8 images
and batches."""

import torch
from torchvision.transforms.v2 import functional as TF

# PCA of ImageNet's RGB pixels in [0, 1] (fb.resnet.torch): eigenvalues and eigenvectors (columns).
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pca_shift(count: int, std: float, device: torch.device, alphas: torch.Tensor | None = None) -> torch.Tensor:
    """§4.1's PCA colour noise for ``count`` images, ``count×3``: ``eigvec @ (alpha * eigval)``,
    ``alpha ~ N(0, std)`` drawn once per image, in [0, 1] pixel units."""
    if alphas is None:
        alphas = torch.randn(count, 3, device=device) * std
    return (alphas * PCA_EIGVAL.to(device)) @ PCA_EIGVEC.to(device).T


def lighting(images: torch.Tensor, std: float, alphas: torch.Tensor | None = None) -> torch.Tensor:
    """Add the PCA colour noise (:func:`pca_shift`) to every pixel of floats in [0, 1], ``B×3×H×W``."""
    return images + pca_shift(images.shape[0], std, images.device, alphas)[:, :, None, None]


def to_normalised_floats(
    images: torch.Tensor, pca_std: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 batch -> floats in [0, 1], PCA colour noise (when ``pca_std`` > 0, single crops only;
    drawn from ``generator`` if given), then per-channel normalisation: the work done once per
    batch, on the device.

    All of it is one per-channel affine map, ``x * 1/(255 std) + (noise - mean)/std``, applied in
    one fused pass over the converted batch."""
    device = images.device
    mean, std = torch.tensor(IMAGENET_MEAN, device=device), torch.tensor(IMAGENET_STD, device=device)
    if pca_std > 0 and images.ndim == 4:
        alphas = torch.randn(images.shape[0], 3, device=device, generator=generator) * pca_std
        shift = pca_shift(images.shape[0], pca_std, device, alphas)
    else:
        shift = torch.zeros(3, device=device)
    offset = ((shift - mean) / std)[..., None, None]  # B×3×1×1, or 3×1×1
    # Straight from uint8 into a contiguous float batch: one pass, whatever the input's layout (the
    # shard loader's batches are channels-last views); a separate .float() would be a second pass.
    out = torch.empty(images.shape, dtype=torch.float32, device=device)
    return torch.addcmul(offset, images, (1 / (255 * std))[:, None, None], out=out)


def ten_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's 10 test patches of a ``3×H×W`` image: 4 corners + centre, then their mirror images."""
    patches = TF.five_crop(image, [size, size])
    return torch.stack([*patches, *(TF.horizontal_flip(p) for p in patches)])
