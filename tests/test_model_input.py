"""What ``encode`` / ``decode`` / ``reconstruct`` accept: the dataset's uint8 images as they are, or floats."""

from __future__ import annotations

import pytest
import torch

from tripod_pl.data.transforms import as_model_input, to_float_images

from .helpers import TINY


def _uint8_nhwc(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_uint8_channels_last_or_first_and_float_images_convert_alike():
    nhwc = _uint8_nhwc()
    want = to_float_images(nhwc)
    torch.testing.assert_close(as_model_input(nhwc), want)
    torch.testing.assert_close(as_model_input(nhwc.permute(0, 3, 1, 2)), want)
    torch.testing.assert_close(as_model_input(want), want)
    torch.testing.assert_close(as_model_input(want.permute(0, 2, 3, 1)), want)
    assert as_model_input(nhwc, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(64, 64, 3, dtype=torch.uint8), r"N x 3 x H x W or N x H x W x 3.*shape \(64, 64, 3\)"),
        (torch.zeros(2, 1, 64, 64), r"shape \(2, 1, 64, 64\)"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.int64), "torch.int64"),
        (torch.full((2, 3, 8, 8), 255.0), r"must be in \[-1, 1\], got values in \[255, 255\]"),
    ],
)
def test_anything_else_is_one_clear_error(images, message):
    with pytest.raises((ValueError, TypeError), match=message):
        as_model_input(images)


def test_encode_takes_dataset_images_and_returns_plain_tensors():
    from tripod_pl import TripodAutoencoder
    from tripod_pl.legs import FSQ, KLM, NHP

    torch.manual_seed(0)
    model = TripodAutoencoder(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=6, **TINY).eval()
    nhwc = _uint8_nhwc()
    z = model.encode(nhwc)
    torch.testing.assert_close(z, model.encode(to_float_images(nhwc)))
    torch.testing.assert_close(z, model.encode(nhwc.permute(0, 3, 1, 2)))
    x = model.decode(z)
    assert x.shape == (4, 3, 64, 64) and not z.requires_grad and not x.requires_grad  # no "detach() first"
    torch.testing.assert_close(model.reconstruct(nhwc), model.reconstruct(to_float_images(nhwc)))
    with pytest.raises(ValueError, match=r"expected latents N x 6, got shape \(4, 5\)"):
        model.decode(z[:, :5])


def test_module_encode_takes_dataset_images():
    from .helpers import tiny_model

    module = tiny_model().eval()
    nhwc = _uint8_nhwc(2)
    torch.testing.assert_close(module.encode(nhwc), module.encode(to_float_images(nhwc)))
