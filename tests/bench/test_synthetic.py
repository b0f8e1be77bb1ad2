import numpy as np

from rlvla3.bench.synthetic import random_obs


def test_random_obs_shapes_and_instruction_cycle():
    obs = random_obs(5, 16, 4, ["a", "b"], seed=3)
    assert obs.images.shape == (5, 16, 16, 3) and obs.images.dtype == np.uint8
    assert obs.proprio.shape == (5, 4) and obs.proprio.dtype == np.float32
    assert obs.instructions == ["a", "b", "a", "b", "a"]
    np.testing.assert_array_equal(random_obs(5, 16, 4, ["a"], seed=3).images, obs.images)  # seeded
