"""Two-view pipelines: SimCLR / crop-affine augmentation and the shallow task's top/bottom halves."""

from __future__ import annotations

import pytest
import torch

from pdlightning.data import HalvesViews, MNISTViews, SimCLRViews


def test_halves_are_top_and_bottom_of_the_image() -> None:
    image = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 28, 28)
    x, y = HalvesViews().views(image)
    assert x.shape == y.shape == (392,)
    torch.testing.assert_close(x, image[0, :14].reshape(-1))
    torch.testing.assert_close(y, image[0, 14:].reshape(-1))
    torch.testing.assert_close(HalvesViews().eval_view(image), x)
    colour = torch.rand(3, 32, 32)
    top, bottom = HalvesViews().views(colour)
    assert top.shape == (3 * 16 * 32,)
    torch.testing.assert_close(bottom, colour[:, 16:].reshape(-1))


def test_halves_noise_is_shared_and_optional() -> None:
    image = torch.zeros(1, 4, 2)
    x, y = HalvesViews(noise_std=1.0).views(image)
    torch.testing.assert_close(x, y)  # the same draw on both halves, as in the public code
    assert x.abs().sum() > 0
    with pytest.raises(ValueError, match="noise_std"):
        HalvesViews(noise_std=-1.0)


@pytest.mark.parametrize(
    "views, shape", [(MNISTViews(), (1, 28, 28)), (SimCLRViews(), (3, 32, 32))], ids=["mnist", "simclr"]
)
def test_augmented_views_differ_and_eval_view_is_deterministic(views, shape) -> None:
    torch.manual_seed(0)
    image = torch.rand(*shape)
    x, y = views.views(image)
    assert x.shape == y.shape == shape
    assert not torch.allclose(x, y), "two random views of one image should differ"
    torch.testing.assert_close(views.eval_view(image), views.eval_view(image))
    mean = torch.tensor(views.normalize.mean).reshape(-1, 1, 1)
    std = torch.tensor(views.normalize.std).reshape(-1, 1, 1)
    torch.testing.assert_close(views.eval_view(image), (image - mean) / std)
