"""Hand-computed checks for the advantage estimators (rlvla3.core.experience) and normalize (rlvla3.core.losses)."""
import numpy as np
import pytest

from rlvla3.core.experience import compute_gae, discounted_return, grpo_advantages, is_degenerate_group
from rlvla3.core.losses import normalize

R = [1.0, 0.0, 2.0]
V = [0.5, 1.0, 1.5]


def test_gae_terminated_by_hand():
    # gamma=0.9, lam=0.8 -> gamma*lam = 0.72; V(s_3) = 0 (terminal)
    # d2 = 2 + 0 - 1.5 = 0.5                 A2 = 0.5
    # d1 = 0 + 0.9*1.5 - 1.0 = 0.35          A1 = 0.35 + 0.72*0.5  = 0.71
    # d0 = 1 + 0.9*1.0 - 0.5 = 1.4           A0 = 1.4 + 0.72*0.71  = 1.9112
    adv, ret = compute_gae(R, V, bootstrap_value=123.0, terminated=True, gamma=0.9, lam=0.8)
    assert adv.dtype == np.float32 and ret.dtype == np.float32
    np.testing.assert_allclose(adv, [1.9112, 0.71, 0.5], atol=1e-6)
    np.testing.assert_allclose(ret, [2.4112, 1.71, 2.0], atol=1e-6)


def test_gae_bootstrapped_by_hand():
    # truncated, V(s_3) = 2.0
    # d2 = 2 + 0.9*2.0 - 1.5 = 2.3           A2 = 2.3
    # d1 = 0.35                              A1 = 0.35 + 0.72*2.3   = 2.006
    # d0 = 1.4                               A0 = 1.4 + 0.72*2.006  = 2.84432
    adv, ret = compute_gae(R, V, bootstrap_value=2.0, terminated=False, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv, [2.84432, 2.006, 2.3], atol=1e-6)
    np.testing.assert_allclose(ret, [3.34432, 3.006, 3.8], atol=1e-6)


def test_gae_lambda_limits():
    # lam=1, terminated: returns are the discounted Monte-Carlo returns
    # G2 = 2, G1 = 0 + 0.9*2 = 1.8, G0 = 1 + 0.9*1.8 = 2.62
    _, ret = compute_gae(R, V, 0.0, True, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(ret, [2.62, 1.8, 2.0], atol=1e-6)
    # lam=0: advantages are the one-step TD errors
    adv, _ = compute_gae(R, V, 0.0, True, gamma=0.9, lam=0.0)
    np.testing.assert_allclose(adv, [1.4, 0.35, 0.5], atol=1e-6)


def test_gae_shape_mismatch():
    with pytest.raises(ValueError):
        compute_gae([1.0, 2.0], [0.0], 0.0, True, 0.9, 0.8)


def test_discounted_return():
    assert discounted_return(R, 0.9) == pytest.approx(2.62)   # 1 + 0.81*2
    assert discounted_return([0.0, 0.0, 0.0, 1.0], 0.5) == pytest.approx(0.125)


def test_grpo_advantages_1001():
    # mean 0.5, population std 0.5 -> +-0.5 / (0.5 + 1e-6)
    a = grpo_advantages([1, 0, 0, 1])
    expected = 0.5 / 0.500001
    np.testing.assert_allclose(a, [expected, -expected, -expected, expected], rtol=1e-6)
    np.testing.assert_allclose(grpo_advantages([1, 0, 0, 1], normalize_std=False),
                               [0.5, -0.5, -0.5, 0.5])


def test_grpo_advantages_population_std():
    # [1,0,0,0]: mean 0.25, var = (0.75^2 + 3*0.25^2)/4 = 0.1875, std = sqrt(3)/4
    # -> 0.75/(sqrt3/4) = sqrt3 ; -0.25/(sqrt3/4) = -1/sqrt3
    a = grpo_advantages([1, 0, 0, 0], eps=0.0)
    s3 = np.sqrt(3.0)
    np.testing.assert_allclose(a, [s3, -1 / s3, -1 / s3, -1 / s3], rtol=1e-6)


def test_degenerate_groups():
    assert is_degenerate_group([1.0, 1.0, 1.0])
    assert is_degenerate_group([0, 0, 0, 0])
    assert is_degenerate_group([1.0, 1.0 + 1e-10])
    assert not is_degenerate_group([1, 0, 0, 1])
    assert not is_degenerate_group([0.0, 0.5])
    # degenerate groups give all-zero GRPO advantages (no signal)
    np.testing.assert_allclose(grpo_advantages([1, 1, 1]), [0.0, 0.0, 0.0])


def test_normalize():
    # [1,2,3]: mean 2, std sqrt(2/3) -> +-1/sqrt(2/3) = +-1.2247449
    np.testing.assert_allclose(normalize([1.0, 2.0, 3.0]), [-1.2247449, 0.0, 1.2247449], rtol=1e-6)
    out = normalize(np.array([3.0, -1.0, 7.0, 2.0]))
    assert abs(out.mean()) < 1e-6 and out.std() == pytest.approx(1.0, abs=1e-5)
    # single element / constant batch: zeros, not NaN
    np.testing.assert_array_equal(normalize([5.0]), [0.0])
    np.testing.assert_array_equal(normalize([2.0, 2.0]), [0.0, 0.0])
