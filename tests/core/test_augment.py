import numpy as np

from rlvla3.core.augment import random_shift


def test_zero_pad_returns_the_images_unchanged():
    imgs = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    assert random_shift(imgs, 0, np.random.default_rng(0)) is imgs


def test_each_image_is_a_shifted_window_of_its_edge_padded_self():
    gen = np.random.default_rng(1)
    imgs = gen.integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
    out = random_shift(imgs, 2, np.random.default_rng(5))
    assert out.shape == imgs.shape and out.dtype == imgs.dtype
    shifts = set()
    for a, b in zip(imgs, out):
        padded = np.pad(a, ((2, 2), (2, 2), (0, 0)), mode="edge")
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[dy:dy + 8, dx:dx + 8], b)]
        assert found, "every output must be a window of the padded input"
        shifts.add(found[0])
    assert len(shifts) > 10  # the shifts vary from image to image
