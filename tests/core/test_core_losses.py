"""Hand-computed checks for rlvla3.core.losses (float64 so numbers match by hand)."""
import math

import pytest
import torch

from rlvla3.core.losses import (aggregate_logprobs, decoupled_ppo_loss, entropy_mean, executed_tokens,
                                kl_estimates, ppo_policy_loss, ratio_mask, ref_kl_penalty, value_loss)

D = torch.float64


def lg(*ratios):
    """log of given ratios as an (N, 1) tensor: logp_new - logp_old = log(ratio)."""
    return torch.tensor([[math.log(r)] for r in ratios], dtype=D)


# ---------------------------------------------------------------- aggregate
def test_aggregate_levels():
    logp = torch.arange(12, dtype=D).reshape(2, 6)  # chunk=3 steps x action_dim=2
    assert torch.equal(aggregate_logprobs(logp, 3, 2, "token"), logp)
    # step-major: step s holds tokens 2s, 2s+1 -> [0+1, 2+3, 4+5], [6+7, 8+9, 10+11]
    assert aggregate_logprobs(logp, 3, 2, "action").tolist() == [[1, 5, 9], [13, 17, 21]]
    assert aggregate_logprobs(logp, 3, 2, "chunk").tolist() == [[15], [51]]
    with pytest.raises(ValueError):
        aggregate_logprobs(logp, 3, 2, "sequence")
    with pytest.raises(ValueError):
        aggregate_logprobs(logp, 2, 2, "action")  # 6 != 4
    with pytest.raises(ValueError):
        aggregate_logprobs(logp[0], 3, 2, "token")  # not 2-D


def test_unexecuted_sub_actions_leave_every_level():
    """Row 0 executed 1 of 3 sub-actions (its episode ended mid-chunk), row 1 all (-1)."""
    tok = executed_tokens([1, -1], 3, 2)
    assert tok.tolist() == [[True, True, False, False, False, False], [True] * 6]
    assert ratio_mask(tok, 3, 2, "action").tolist() == [[True, False, False], [True, True, True]]
    assert ratio_mask(tok, 3, 2, "chunk").tolist() == [[True], [True]]
    logp = torch.arange(12, dtype=D).reshape(2, 6).requires_grad_(True)
    assert aggregate_logprobs(logp, 3, 2, "chunk", tok).tolist() == [[1], [51]]  # the executed tokens only
    for level in ("token", "action", "chunk"):
        new = aggregate_logprobs(logp, 3, 2, level, tok)
        old = new.detach() - 0.1
        loss, _ = ppo_policy_loss(new, old, torch.tensor([1.0, -1.0], dtype=D),
                                  mask=ratio_mask(tok, 3, 2, level))
        (grad,) = torch.autograd.grad(loss, logp)
        assert torch.all(grad[0, 2:] == 0) and torch.all(grad[0, :2] != 0) and torch.all(grad[1] != 0), level


# ---------------------------------------------------------------- PPO
# rows: (A, ratio) -> per-element loss with clip 0.2
#  (+1, 1.1) inside           -> -1.1
#  (+1, 1.5) above, clipped   -> -min(1.5, 1.2) = -1.2
#  (+1, 0.5) below, A>0       -> -min(0.5, 0.8) = -0.5  (clip does not help, unclipped)
#  (-1, 0.5) below, clipped   -> -min(-0.5, -0.8) = 0.8
#  (-1, 1.5) above, A<0       -> -min(-1.5, -1.2) = 1.5 (unclipped)
#  (-2, 1.1) inside           -> 2.2
ADV = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -2.0], dtype=D)
RATIOS = (1.1, 1.5, 0.5, 0.5, 1.5, 1.1)


def test_ppo_clip_cases_by_hand():
    new = lg(*RATIOS).requires_grad_(True)
    old = torch.zeros(6, 1, dtype=D, requires_grad=True)
    adv = ADV.clone().requires_grad_(True)
    loss, st = ppo_policy_loss(new, old, adv)
    # sum = -1.1 - 1.2 - 0.5 + 0.8 + 1.5 + 2.2 = 1.7 ; mean over 6
    assert loss.item() == pytest.approx(1.7 / 6)
    assert st["clip_frac"] == pytest.approx(2 / 6)
    assert st["ratio_mean"] == pytest.approx(6.2 / 6)
    assert st["ratio_max"] == pytest.approx(1.5)
    # k3 per element (r-1) - ln r: 1.1 -> 0.0046898, 1.5 -> 0.0945349, 0.5 -> 0.1931472
    assert st["approx_kl"] == pytest.approx(2 * (0.0046898 + 0.0945349 + 0.1931472) / 6, abs=1e-6)
    assert st["dual_clip_frac"] == 0.0
    assert all(isinstance(v, float) for v in st.values())
    loss.backward()
    # d loss / d logp_new = -r*A/6 where unclipped, 0 where clipped
    exp = [-1.1 / 6, 0.0, -0.5 / 6, 0.0, 1.5 / 6, 2.2 / 6]
    assert new.grad.flatten().tolist() == pytest.approx(exp)
    assert old.grad is None and adv.grad is None


def test_ppo_asymmetric_clip_higher():
    # clip_low 0.2, clip_high 0.28:
    #  (+1, 1.25) inside upper bound 1.28 -> -1.25 (symmetric 0.2 would give -1.2)
    #  (+1, 1.5)  clipped at 1.28         -> -1.28
    #  (-1, 0.75) clipped at 0.8          -> 0.8
    new, old = lg(1.25, 1.5, 0.75), torch.zeros(3, 1, dtype=D)
    adv = torch.tensor([1.0, 1.0, -1.0], dtype=D)
    loss, st = ppo_policy_loss(new, old, adv, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-1.25 - 1.28 + 0.8) / 3)
    assert st["clip_frac"] == pytest.approx(2 / 3)
    loss_sym, _ = ppo_policy_loss(new, old, adv)
    assert loss_sym.item() == pytest.approx((-1.2 - 1.2 + 0.8) / 3)


def test_ppo_dual_clip():
    # c = 3:
    #  (-1, 5.0): min(-5, -1.2) = -5 < 3*A = -3 -> bounded: loss 3 (dual active)
    #  (-1, 2.0): min(-2, -1.2) = -2 > -3       -> loss 2
    #  (+1, 5.0): -1.2 (dual clip only for A<0)
    new = lg(5.0, 2.0, 5.0).requires_grad_(True)
    old = torch.zeros(3, 1, dtype=D)
    adv = torch.tensor([-1.0, -1.0, 1.0], dtype=D)
    loss, st = ppo_policy_loss(new, old, adv, dual_clip=3.0)
    assert loss.item() == pytest.approx((3.0 + 2.0 - 1.2) / 3)
    assert st["dual_clip_frac"] == pytest.approx(1 / 3)
    loss.backward()
    # dual-capped and clipped elements carry no gradient; the middle one: -r*A/3 = 2/3
    assert new.grad.flatten().tolist() == pytest.approx([0.0, 2.0 / 3, 0.0])
    plain, _ = ppo_policy_loss(new, old, adv)
    assert plain.item() == pytest.approx((5.0 + 2.0 - 1.2) / 3)
    for bad in (1.0, 0.5):
        with pytest.raises(ValueError):
            ppo_policy_loss(new, old, adv, dual_clip=bad)


def test_ppo_mask_and_broadcast():
    # N=2, K=2, A broadcast over K:
    #  sample0 A=+1 ratios (1.1, 1.5) -> -1.1, -1.2
    #  sample1 A=-1 ratios (0.5, 1.0) -> 0.8, 1.0
    new = torch.log(torch.tensor([[1.1, 1.5], [0.5, 1.0]], dtype=D))
    old = torch.zeros(2, 2, dtype=D)
    adv = torch.tensor([1.0, -1.0], dtype=D)
    loss, _ = ppo_policy_loss(new, old, adv)
    assert loss.item() == pytest.approx((-1.1 - 1.2 + 0.8 + 1.0) / 4)
    loss_m, st = ppo_policy_loss(new, old, adv, mask=torch.tensor([1.0, 0.0]))
    assert loss_m.item() == pytest.approx((-1.1 - 1.2) / 2)
    assert st["ratio_max"] == pytest.approx(1.5) and st["ratio_mean"] == pytest.approx(1.3)
    # masked-out sample with a huge ratio must not leak into loss or stats
    new2 = new.clone()
    new2[1] = 10.0
    loss_m2, st2 = ppo_policy_loss(new2, old, adv, mask=torch.tensor([1.0, 0.0]))
    assert loss_m2.item() == pytest.approx(loss_m.item()) and st2["ratio_max"] == pytest.approx(1.5)
    # (N,K) advantages equal to the broadcast give the same loss
    loss_full, _ = ppo_policy_loss(new, old, adv[:, None].expand(2, 2))
    assert loss_full.item() == pytest.approx(loss.item())
    # all-masked -> 0, not NaN
    loss0, _ = ppo_policy_loss(new, old, adv, mask=torch.zeros(2))
    assert loss0.item() == 0.0


def test_ppo_equal_policies():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 3, generator=g, dtype=D)
    adv = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=D)
    loss, st = ppo_policy_loss(logp.clone(), logp, adv)
    assert st["approx_kl"] == 0.0 and st["clip_frac"] == 0.0
    assert st["ratio_mean"] == 1.0 and st["ratio_max"] == 1.0
    assert loss.item() == pytest.approx(-(0.5 - 1.0 + 2.0 + 0.0) / 4)


# ---------------------------------------------------------------- decoupled PPO
def test_decoupled_equals_ppo_when_prox_is_behav():
    g = torch.Generator().manual_seed(1)
    new = (-torch.rand(5, 4, generator=g, dtype=D)).requires_grad_(True)
    prox = new.detach() + 0.3 * torch.randn(5, 4, generator=g, dtype=D)
    adv = torch.randn(5, generator=g, dtype=D)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    for kw in ({}, {"dual_clip": 3.0, "clip_high": 0.28}):
        l_ppo, s_ppo = ppo_policy_loss(new, prox, adv, mask=mask, **kw)
        l_dec, s_dec = decoupled_ppo_loss(new, prox, prox.clone(), adv, mask=mask, **kw)
        assert torch.equal(l_ppo, l_dec)
        for k in s_ppo:
            assert s_dec[k] == s_ppo[k]
        assert s_dec["behav_weight_mean"] == 1.0 and s_dec["behav_weight_masked_frac"] == 0.0
        (g1,) = torch.autograd.grad(l_ppo, new)
        (g2,) = torch.autograd.grad(l_dec, new)
        assert torch.equal(g1, g2)


def test_decoupled_weight_mask_by_hand():
    # w = prox/behav: sample0 3.0 -> above the cap 2.0: masked (weight 0); sample1 0.5
    # r = new/prox:   sample0 1.5, A=+1 -> -min(1.5, 1.2) = -1.2 ; *0   -> 0
    #                 sample1 1.1, A=-1 -> 1.1               ; *0.5 -> 0.55
    prox = torch.tensor([[-1.0], [-2.0]], dtype=D, requires_grad=True)
    behav = (prox.detach() - lg(3.0, 0.5)).requires_grad_(True)
    new = (prox.detach() + lg(1.5, 1.1)).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0], dtype=D)
    loss, st = decoupled_ppo_loss(new, prox, behav, adv, behav_weight_cap=2.0)
    assert loss.item() == pytest.approx((0.0 + 0.55) / 2)
    assert st["behav_weight_mean"] == pytest.approx(0.5)  # over the kept sample
    assert st["behav_weight_masked_frac"] == pytest.approx(0.5)
    assert st["clip_frac"] == pytest.approx(0.5)
    assert st["ratio_max"] == pytest.approx(1.5)  # ratio is w.r.t. prox, not behav
    loss.backward()
    # only sample1 unclipped: d/dnew of 0.5 * (-r*A) / 2 = 0.5*1.1/2
    assert new.grad.flatten().tolist() == pytest.approx([0.0, 0.275])
    assert prox.grad is None and behav.grad is None
    # a larger cap lets sample0 keep w=3: (-3.6 + 0.55)/2
    loss_big, st_big = decoupled_ppo_loss(new, prox, behav, adv, behav_weight_cap=5.0)
    assert loss_big.item() == pytest.approx((-3.6 + 0.55) / 2)
    assert st_big["behav_weight_masked_frac"] == 0.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            decoupled_ppo_loss(new, prox, behav, adv, behav_weight_cap=bad)


def test_decoupled_masks_samples_whose_behaviour_weight_exceeds_the_cap():
    """Issue 22 / AReaL: a sample whose behaviour weight prox/behav is above the cap is dropped
    from the loss (zero gradient), not clamped to the cap; it still counts in the mean."""
    prox = torch.tensor([[-1.0], [-2.0]], dtype=D)
    behav = prox - lg(3.0, 0.5)  # w = [3.0 (> cap 2), 0.5]
    new = (prox + lg(1.1, 1.1)).requires_grad_(True)  # inside the clip range: a clamp would keep its gradient
    adv = torch.tensor([1.0, 1.0], dtype=D)
    loss, st = decoupled_ppo_loss(new, prox, behav, adv, behav_weight_cap=2.0)
    loss.backward()
    assert new.grad[0].item() == 0.0  # clamped, it was -2.0 * 1.1 / 2 = -1.1
    assert new.grad[1].item() == pytest.approx(-0.5 * 1.1 / 2)
    assert loss.item() == pytest.approx(-0.5 * 1.1 / 2)
    assert st["behav_weight_masked_frac"] == pytest.approx(0.5)


def test_decoupled_trust_region_centred_on_prox():
    # new == prox but behaviour very stale (prox/behav = 1.8): no clipping at all,
    # loss = -w*A = -1.8 ; ordinary PPO around behav would clip ratio 1.8 to 1.2
    prox = torch.zeros(1, 1, dtype=D)
    behav = -lg(1.8)
    adv = torch.tensor([1.0], dtype=D)
    loss, st = decoupled_ppo_loss(prox.clone(), prox, behav, adv)
    assert loss.item() == pytest.approx(-1.8) and st["clip_frac"] == 0.0
    loss_ppo, st_ppo = ppo_policy_loss(prox.clone(), behav, adv)
    assert loss_ppo.item() == pytest.approx(-1.2) and st_ppo["clip_frac"] == 1.0


# ---------------------------------------------------------------- value / entropy / KL
def test_value_loss_by_hand():
    # clip 0.2:
    #  s0: v=1.0 old=0.5 R=2: unclipped 1.0; v_clip=0.7 -> 1.69 -> max 1.69
    #  s1: v=2.0 old=2.5 R=1: unclipped 1.0; v_clip=2.3 -> 1.69 -> max 1.69
    #  s2: v=0.0 old=1.0 R=1: unclipped 1.0; v_clip=0.8 -> 0.04 -> max 1.0
    v = torch.tensor([1.0, 2.0, 0.0], dtype=D, requires_grad=True)
    old = torch.tensor([0.5, 2.5, 1.0], dtype=D, requires_grad=True)
    ret = torch.tensor([2.0, 1.0, 1.0], dtype=D, requires_grad=True)
    assert value_loss(v, old, ret).item() == pytest.approx(0.5)
    loss = value_loss(v, old, ret, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.69 + 1.0) / 3)
    loss.backward()
    # clipped branch picked for s0,s1 -> 0 grad; s2: d/dv 0.5*(v-R)^2/3 = (0-1)/3
    assert v.grad.tolist() == pytest.approx([0.0, 0.0, -1 / 3])
    assert old.grad is None and ret.grad is None
    masked = value_loss(v, old, ret, clip=0.2, mask=torch.tensor([1.0, 0.0, 1.0]))
    assert masked.item() == pytest.approx(0.5 * (1.69 + 1.0) / 2)
    with pytest.raises(ValueError):
        value_loss(v, old[:2], ret)


def test_entropy_mean():
    ent = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    assert entropy_mean(ent).item() == pytest.approx(2.5)
    assert entropy_mean(ent, mask=torch.tensor([0.0, 1.0])).item() == pytest.approx(3.5)


def test_kl_estimates_by_hand():
    # a = ln[0.5, 0.25], b = ln[0.25, 0.5]; a-b = [ln2, -ln2] -> k1 = 0
    # d = b-a: e^d - 1 - d = [0.5 - 1 + ln2, 2 - 1 - ln2] -> sum 0.5 -> k3 = 0.25
    a = torch.log(torch.tensor([0.5, 0.25], dtype=D))
    b = torch.log(torch.tensor([0.25, 0.5], dtype=D))
    kl = kl_estimates(a, b)
    assert kl["k1"] == pytest.approx(0.0, abs=1e-12)
    assert kl["k3"] == pytest.approx(0.25)
    # single sample: a-b = ln2 -> k1 = ln2 ; k3 = 0.5 - 1 + ln2
    kl1 = kl_estimates(a[:1], b[:1])
    assert kl1["k1"] == pytest.approx(math.log(2)) and kl1["k3"] == pytest.approx(math.log(2) - 0.5)
    assert kl_estimates(a, a.clone()) == {"k1": 0.0, "k3": 0.0}
    assert isinstance(kl["k1"], float)


def test_ref_kl_penalty_by_hand_and_its_gradient_pulls_toward_the_reference():
    new = torch.tensor([[math.log(0.5), math.log(0.2)], [math.log(0.1), math.log(0.4)]], dtype=D, requires_grad=True)
    ref = torch.tensor([[math.log(0.5), math.log(0.4)], [math.log(0.3), math.log(0.4)]], dtype=D)
    r = [0.0, math.log(2.0), math.log(3.0), 0.0]  # log ref - log new
    k3 = [math.exp(x) - 1 - x for x in r]
    got = ref_kl_penalty(new, ref)
    assert float(got.detach()) == pytest.approx(sum(k3) / 4)
    got.backward()
    # d/d(new) of exp(r) - 1 - r is 1 - exp(r): negative where ref > new, so descent raises new there
    assert new.grad[0, 1] < 0 and new.grad[1, 0] < 0 and new.grad[0, 0] == 0 and new.grad[1, 1] == 0
    assert float(ref_kl_penalty(ref.clone(), ref)) == 0.0
    mask = torch.tensor([[True, False], [True, True]])  # an unexecuted token leaves the mean
    assert float(ref_kl_penalty(new.detach(), ref, mask)) == pytest.approx((k3[0] + k3[2] + k3[3]) / 3)


def test_k2_ref_penalty_is_half_the_squared_log_ratio_and_stays_finite_far_from_the_reference():
    new = torch.tensor([[math.log(0.5), math.log(0.2)]], dtype=torch.float32, requires_grad=True)
    ref = torch.tensor([[math.log(0.5), math.log(0.4)]], dtype=torch.float32)
    got = ref_kl_penalty(new, ref, estimator="k2")
    assert float(got.detach()) == pytest.approx(0.5 * math.log(2.0) ** 2 / 2, rel=1e-6)
    got.backward()
    assert new.grad[0, 0] == 0 and float(new.grad[0, 1]) == pytest.approx(-math.log(2.0) / 2, rel=1e-6)  # -r / n
    far = torch.tensor([[-300.0]])  # a Gaussian head's log-density deep in the reference's tail
    assert math.isinf(float(ref_kl_penalty(far, torch.tensor([[5.0]]))))  # k3 overflows in float32
    assert float(ref_kl_penalty(far, torch.tensor([[5.0]]), estimator="k2")) == pytest.approx(0.5 * 305.0 ** 2)


def test_clipped_ref_penalty_caps_far_tokens_without_overflow_or_their_gradient():
    new = torch.tensor([[-300.0, math.log(0.2), -1.0]], dtype=torch.float32, requires_grad=True)
    ref = torch.tensor([[5.0, math.log(0.4), -20.0]], dtype=torch.float32)  # r = 305, log 2, -19
    got = ref_kl_penalty(new, ref, clip=10.0)
    k3_mid = 2.0 - 1.0 - math.log(2.0)
    assert float(got.detach()) == pytest.approx((10.0 + k3_mid + 10.0) / 3, rel=1e-6)  # both far ones capped
    got.backward()
    assert torch.isfinite(new.grad).all()  # no inf * 0 = nan from the capped exp
    assert new.grad[0, 0] == 0 and new.grad[0, 2] == 0  # past the cap: no pull
    assert float(new.grad[0, 1]) == pytest.approx((1.0 - 2.0) / 3, rel=1e-5)  # below it: k3's own gradient
    huge = float(ref_kl_penalty(new.detach(), ref, clip=1e20))  # a cap past exp(EXP_SAFE): r is held there
    assert math.isfinite(huge) and huge > 1e12
    near = torch.tensor([[math.log(0.2)]])
    assert float(ref_kl_penalty(near, torch.tensor([[math.log(0.4)]]), clip=10.0)) == pytest.approx(k3_mid, rel=1e-6)
    assert float(ref_kl_penalty(new.detach(), ref, estimator="k2", clip=10.0)) == pytest.approx(
        (10.0 + 0.5 * math.log(2.0) ** 2 + 10.0) / 3, rel=1e-6)
