"""A vision transformer's patch embedding (``derivations.reference.patch``) against ``torch.nn.Conv2d``.

A convolution whose stride equals its kernel size sees each ``p x p`` patch once: it is the
patch embedding ``unfold(images) W + b``. Checked forward and backward in float64 against
PyTorch, and by central differences; the fold is checked to be the adjoint of the unfold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derivations.reference import fold_patches, gradcheck, patch_embed, patch_embed_backward, unfold_patches

RTOL = 1e-12


def conv2d_patch_embedding(images, W, b, patch):
    """PyTorch's ViT recipe: Conv2d(C, d, kernel_size=p, stride=p), then flatten and transpose."""
    C, d = images.shape[1], W.shape[1]
    conv = torch.nn.Conv2d(C, d, kernel_size=patch, stride=patch, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(W.T.reshape(d, C, patch, patch)))
        conv.bias.copy_(torch.tensor(b))
    x = torch.tensor(images, requires_grad=True)
    tokens = conv(x).flatten(2).transpose(1, 2)  # [B, d, H/p, W/p] -> [B, N, d]
    return conv, x, tokens


@pytest.mark.parametrize("shape, patch, d_model", [((2, 3, 8, 12), 4, 5), ((1, 1, 6, 6), 2, 3),
                                                   ((3, 2, 4, 4), 4, 7), ((1, 3, 5, 10), 5, 2)])
def test_patch_embedding_is_a_strided_convolution(shape, patch, d_model):
    rng = np.random.default_rng(sum(shape) + patch)
    images = rng.standard_normal(shape)
    W = rng.standard_normal((shape[1] * patch * patch, d_model))
    b = rng.standard_normal(d_model)
    tokens, cache = patch_embed(images, W, b, patch)
    dtokens = rng.standard_normal(tokens.shape)
    dimages, dW, db = patch_embed_backward(dtokens, cache)

    conv, x, expected = conv2d_patch_embedding(images, W, b, patch)
    expected.backward(torch.tensor(dtokens))
    np.testing.assert_allclose(tokens, expected.detach().numpy(), rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(dimages, x.grad.numpy(), rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(dW, conv.weight.grad.numpy().reshape(d_model, -1).T, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(db, conv.bias.grad.numpy(), rtol=RTOL, atol=RTOL)


def test_patches_are_read_row_by_row_channel_first():
    image = np.arange(2 * 4 * 4, dtype=float).reshape(1, 2, 4, 4)  # two channels of a 4 x 4 image
    patches = unfold_patches(image, 2)
    assert patches.shape == (1, 4, 8)
    # token 1 is the patch in row 0, column 1: pixels (0..1, 2..3) of channel 0, then of channel 1
    assert patches[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0, 18.0, 19.0, 22.0, 23.0]
    assert patches[0, 2, :4].tolist() == [8.0, 9.0, 12.0, 13.0]  # token 2: the patch below token 0


def test_fold_is_the_adjoint_of_unfold():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 4))
    y = rng.standard_normal((2, 6, 12))
    assert np.isclose(np.sum(unfold_patches(x, 2) * y), np.sum(x * fold_patches(y, x.shape, 2)), rtol=1e-14)
    np.testing.assert_array_equal(fold_patches(unfold_patches(x, 2), x.shape, 2), x)


def test_gradients_match_central_differences():
    rng = np.random.default_rng(1)
    images, W, b = rng.standard_normal((1, 2, 4, 6)), rng.standard_normal((8, 3)), rng.standard_normal(3)
    r = rng.standard_normal((1, 6, 3))

    def loss(images, W, b):
        return float(np.sum(r * patch_embed(images, W, b, 2)[0]))

    _, cache = patch_embed(images, W, b, 2)
    assert max(gradcheck(loss, [images, W, b], list(patch_embed_backward(r, cache)))) < 1e-7


def test_no_bias():
    rng = np.random.default_rng(2)
    images, W = rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((4, 2))
    tokens, cache = patch_embed(images, W, None, 2)
    np.testing.assert_allclose(tokens, unfold_patches(images, 2) @ W)
    assert patch_embed_backward(np.ones_like(tokens), cache)[2] is None


@pytest.mark.parametrize("images, W, patch, message", [
    (np.zeros((1, 3, 8)), np.zeros((12, 2)), 2, r"images \(1, 3, 8\) must be \[batch, channels, height, width\]"),
    (np.zeros((1, 1, 6, 5)), np.zeros((4, 2)), 2, r"height 6 and width 5 must be multiples of patch = 2"),
    (np.zeros((1, 1, 2, 4)), np.zeros((5, 2)), 2,  # 2 tokens of 4 values: the message must give the 4
     r"W \(5, 2\) must be \[channels patch\^2 = 4, d_model\] for images \(1, 1, 2, 4\) and patch 2"),
    (np.zeros((1, 1, 4, 4)), np.zeros((4, 2)), 0, r"patch must be >= 1, got 0"),
    (np.zeros((1, 1, 4, 4)), np.zeros((4, 2)), 2.0, r"patch must be an integer"),
])
def test_bad_input_is_named(images, W, patch, message):
    with pytest.raises(ValueError, match=message):
        patch_embed(images, W, np.zeros(2), patch)


def test_patch_one_makes_every_pixel_a_token():
    """patch = 1 is allowed: the tokens are the pixels, row by row, each the vector of its channels."""
    image = np.arange(2 * 2 * 3, dtype=float).reshape(1, 2, 2, 3)  # 2 channels, 2 x 3 pixels
    patches = unfold_patches(image, 1)
    assert patches.shape == (1, 6, 2)
    assert patches[0, 4].tolist() == [image[0, 0, 1, 1], image[0, 1, 1, 1]]  # token 4: row 1, column 1
    np.testing.assert_array_equal(fold_patches(patches, image.shape, 1), image)


@pytest.mark.parametrize("patches, image_shape, message", [
    (np.zeros((1, 4, 4)), (1, 4, 4), r"image_shape \(1, 4, 4\) must be \(batch, channels, height, width\)"),
    (np.zeros((1, 2, 4)), (1, 1, 3, 4), r"image_shape \(1, 1, 3, 4\): height and width must be multiples of patch = 2"),
    (np.zeros((1, 2, 4)), (1, 1, 4, 3), r"image_shape \(1, 1, 4, 3\): height and width must be multiples of patch = 2"),
    (np.zeros((1, 5, 4)), (1, 1, 4, 6), r"patches \(1, 5, 4\) must be \(1, 6, 4\) for images \(1, 1, 4, 6\)$"),
])
def test_fold_names_a_bad_image_shape(patches, image_shape, message):
    with pytest.raises(ValueError, match=message):
        fold_patches(patches, image_shape, 2)
