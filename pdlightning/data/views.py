"""Two-view pipelines: an image becomes a joint pair ``(x, y)`` for contrastive SSL.

Each pipeline maps one image ``[C, H, W]`` (float in ``[0, 1]``) to two views (``views``) and to the
un-augmented input in the domain of ``x`` (``eval_view``), which the online probe and the offline
linear evaluation see. Views of the *same* image form the joint pair; views of *other* images in the
(global) batch the product-of-marginals pairs (PD paper, Sec. 5).

- :class:`MNISTViews`: random resized crop + small affine jitter for MNIST-like digits / clothing.
- :class:`SimCLRViews`: the SimCLR CIFAR-10 recipe (Chen et al. 2020, App. A): crop, flip, colour
  jitter (p=0.8), grayscale (p=0.2).
- :class:`HalvesViews`: the PD paper's shallow task after Tschannen et al. (2020): ``x`` = top half
  and ``y`` = bottom half of the image, flattened; no augmentation.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Views", "AugmentedViews", "MNISTViews", "SimCLRViews", "HalvesViews"]


def _v2() -> ModuleType:
    """``torchvision.transforms.v2``, imported where a pipeline is built (not with the package)."""
    from torchvision.transforms import v2

    return v2


class Views:
    """Interface: ``views(image) -> (x, y)`` and ``eval_view(image) -> x`` for one image ``[C, H, W]``."""

    def views(self, image: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def eval_view(self, image: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.views(image)


class AugmentedViews(Views):
    """Two independent draws of one random ``transform`` (a ``torchvision.transforms.v2`` pipeline),
    each followed by ``Normalize(mean, std)``; ``eval_view`` only normalises."""

    def __init__(self, transform: Callable[[Tensor], Tensor], mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean / std: expected equally long per-channel lists with std > 0, got {mean}, {std}")
        v2 = _v2()
        self.normalize = v2.Normalize(list(mean), list(std))
        self.transform = v2.Compose([transform, self.normalize])

    def views(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.transform(image), self.transform(image)

    def eval_view(self, image: Tensor) -> Tensor:
        return self.normalize(image)


class MNISTViews(AugmentedViews):
    """Crop/affine views for 28x28 grey images.

    Args:
        size: output side length.
        crop_scale: area range of ``RandomResizedCrop``.
        degrees: max rotation of ``RandomAffine``.
        translate: max translation (fraction of the side) of ``RandomAffine``.
        mean, std: per-channel normalisation (MNIST statistics by default).
    """

    def __init__(
        self,
        size: int = 28,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        degrees: float = 15.0,
        translate: float = 0.1,
        mean: Sequence[float] = (0.1307,),
        std: Sequence[float] = (0.3081,),
    ) -> None:
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale: expected 0 < low <= high <= 1, got {crop_scale}")
        v2 = _v2()
        transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=tuple(crop_scale), ratio=(0.8, 1.25), antialias=True),
                v2.RandomAffine(degrees=degrees, translate=(translate, translate)),
            ]
        )
        super().__init__(transform, mean, std)


class SimCLRViews(AugmentedViews):
    """SimCLR's CIFAR-10 views: crop (scale 0.08-1), flip, colour jitter, grayscale.

    Args:
        size: output side length (32 for CIFAR-10).
        crop_scale: area range of ``RandomResizedCrop``.
        jitter_strength: ``s`` of SimCLR (brightness/contrast/saturation ``0.8 s``, hue ``0.2 s``).
        jitter_p, grayscale_p: probabilities of colour jitter and grayscale.
        mean, std: per-channel normalisation (CIFAR-10 statistics by default).
    """

    def __init__(
        self,
        size: int = 32,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        jitter_strength: float = 0.5,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
        std: Sequence[float] = (0.2470, 0.2435, 0.2616),
    ) -> None:
        s = jitter_strength
        v2 = _v2()
        transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=tuple(crop_scale), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=jitter_p),
                v2.RandomGrayscale(p=grayscale_p),
            ]
        )
        super().__init__(transform, mean, std)


class HalvesViews(Views):
    """Top half / bottom half of the image, each flattened (the shallow task of Tschannen et al. 2020,
    as the PD paper's public code runs it: ``[n, 784]`` MNIST splits into two ``392``-d halves).

    Args:
        noise_std: optional Gaussian noise added to both halves (the same draw, as in that code).
    """

    def __init__(self, noise_std: float = 0.0) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std: expected a non-negative standard deviation, got {noise_std}")
        self.noise_std = noise_std

    @staticmethod
    def _halves(image: Tensor) -> tuple[Tensor, Tensor]:
        height = image.shape[-2]
        if height % 2:
            raise ValueError(f"image: HalvesViews needs an even height, got shape {tuple(image.shape)}")
        return image[..., : height // 2, :].reshape(-1), image[..., height // 2 :, :].reshape(-1)

    def views(self, image: Tensor) -> tuple[Tensor, Tensor]:
        top, bottom = self._halves(image)
        if self.noise_std > 0:
            noise = self.noise_std * torch.randn_like(top)
            top, bottom = top + noise, bottom + noise
        return top, bottom

    def eval_view(self, image: Tensor) -> Tensor:
        return self._halves(image)[0]
