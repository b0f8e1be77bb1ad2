import numpy as np
import pytest

from rlvla3.core.action_labels import two_peaked_dims


def test_finds_a_dimension_with_labels_at_both_bounds():
    rng = np.random.default_rng(0)
    n = 1000
    a = np.stack([rng.uniform(-0.5, 0.5, n),                 # inside the range
                  np.where(rng.random(n) < 0.7, 1.0, 0.2),   # one peak at +1 only
                  np.where(rng.random(n) < 0.5, 1.0, -1.0),  # bang-bang
                  np.ones(n)], axis=1)                       # constant at the bound
    found = two_peaked_dims(a)
    assert [p.dim for p in found] == [2]
    assert found[0].at_low == pytest.approx(0.5, abs=0.05) and found[0].at_high == pytest.approx(0.5, abs=0.05)


def test_chunks_are_flattened_and_the_threshold_applies_to_each_bound():
    a = np.zeros((10, 8, 2))
    a[:2, :, 0] = 1.0   # 20% at +1
    a[2:3, :, 0] = -1.0  # 10% at -1
    assert [p.dim for p in two_peaked_dims(a, min_fraction=0.1)] == [0]
    assert two_peaked_dims(a, min_fraction=0.15) == []


def test_edge_cases():
    assert two_peaked_dims(np.zeros((0, 3))) == []
    with pytest.raises(ValueError):
        two_peaked_dims(np.zeros((4, 2)), min_fraction=0.0)


def test_flat_dims_compares_each_dimension_with_a_uniform_distribution():
    from rlvla3.core.action_labels import flat_dims
    e = np.zeros((5, 4, 3))
    e[..., 1] = np.log(256)        # uniform
    e[..., 2] = 0.8 * np.log(256)  # broad, under the default 0.85
    assert [d for d, _ in flat_dims(e, 256)] == [1]
    assert [d for d, _ in flat_dims(e, 256, fraction=0.75)] == [1, 2]
    assert flat_dims(np.zeros((0, 4, 3)), 256) == [] and flat_dims(np.zeros(3), 256) == []
