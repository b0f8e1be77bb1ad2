import copy
import dataclasses

import numpy as np
import pytest
import torch

from rlvla3.core.types import ObsBatch, SampleBatch
from rlvla3.runtime.config import load_config
from rlvla3.workers.trainer import Trainer


def _batch(policy, n=8, version=0, seed=0):
    rng = np.random.default_rng(seed)
    obs = ObsBatch(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), rng.normal(size=(n, 4)).astype(np.float32),
                   ["reach the red block"] * n)
    out = policy.act(obs)
    adv = rng.normal(size=n).astype(np.float32)
    return obs, SampleBatch(obs.images, obs.proprio, obs.instructions, out.tokens, out.logp, out.values, adv,
                            rng.normal(size=n).astype(np.float32), np.full(n, version), np.arange(n))


def _trainer(*extra):
    torch.manual_seed(0)
    cfg = load_config(["preset=tiny-test", "algo.global_batch=8", "algo.micro_batch=4", *extra])
    return Trainer(cfg, seed=0)


def test_one_optimizer_step_per_global_batch_and_versions():
    tr = _trainer()
    _, b = _batch(tr.policy, n=16)
    results = tr.train_batch(b)  # 16 samples, global batch 8, 1 epoch -> 2 steps, one new version
    assert len(results) == 2 and tr.updates == 2 and tr.version == 1 and tr.policy.version == 1
    assert all(r.samples == 8 for r in results)


def test_whole_batch_update_trains_every_sample(monkeypatch):
    """n = 700, B = 240 (GRPO sync-best, issue 22): each pass trains all 700 samples once in
    ceil(700/240) = 3 near-equal global steps (it dropped 220 at random), and what the
    trainer reports trained is exactly what its forward passes saw."""
    tr = _trainer("algo.global_batch=240", "algo.micro_batch=128", "algo.update_epochs=2")
    _, b = _batch(tr.policy, n=700)
    seen = []
    rank_loss = tr._rank_loss
    monkeypatch.setattr(tr, "_rank_loss", lambda mb, *a, **k: (seen.append(mb.sample_ids), rank_loss(mb, *a, **k))[1])
    results = tr.train_batch(b)
    assert len(results) == 6 and sorted(r.samples for r in results) == [233, 233, 233, 233, 234, 234]
    ids = np.concatenate(seen)
    assert len(ids) == 2 * 700 and np.array_equal(np.bincount(ids), np.full(700, 2))  # each sample once a pass
    assert tr.samples_trained == sum(r.samples for r in results) == 2 * 700


def test_critic_warmup_leaves_the_policy_unchanged():
    tr = _trainer("algo.critic_warmup_steps=2")
    obs, b = _batch(tr.policy)
    before = tr.policy.evaluate(obs, b.tokens).logp.detach().clone()
    v_before = tr.policy.evaluate(obs, b.tokens).values.detach().clone()
    tr.train_batch(b)
    tr.train_batch(b)
    after = tr.policy.evaluate(obs, b.tokens)
    torch.testing.assert_close(after.logp.detach(), before)
    assert not torch.allclose(after.values.detach(), v_before)  # the critic did learn
    tr.train_batch(b)  # warm-up over: the policy moves
    assert not torch.allclose(tr.policy.evaluate(obs, b.tokens).logp.detach(), before)


def test_kl_to_the_reference_policy_holds_the_policy_near_where_it_started(tmp_path):
    """algo.kl_ref_coef: the KL is 0 at the first pass (the policy is its reference), grows as
    the policy moves, and a large coefficient keeps it nearer the start than none; a resumed
    trainer keeps the weights it was built from as its reference, not the checkpoint's."""
    moved = {}
    for coef in (0.0, 50.0):
        tr = _trainer(f"algo.kl_ref_coef={coef}", "algo.lr=3e-3")
        obs, b = _batch(tr.policy)
        start = tr.policy.evaluate(obs, b.tokens).logp.detach().clone()
        stats = [r.metrics for _ in range(4) for r in tr.train_batch(b)]
        if coef:
            assert stats[0]["kl_ref"] == 0.0 and stats[-1]["kl_ref"] > 0
            assert tr.reference.forwards == len(b)  # later passes read the cache, keyed by sample id
            no_ids = dataclasses.replace(b, sample_ids=np.zeros(0, np.int64))  # uncached: a fresh forward
            torch.testing.assert_close(tr.reference.logp(tr.policy, no_ids), start)  # the reference did not train
            assert tr.reference.forwards == 2 * len(b)
        else:
            assert tr.reference is None and "kl_ref" not in stats[0]
        moved[coef] = float((tr.policy.evaluate(obs, b.tokens).logp.detach() - start).abs().mean())
    assert 0 < moved[50.0] < 0.5 * moved[0.0]
    tr.save(str(tmp_path / "ckpt"))
    resumed = _trainer("algo.kl_ref_coef=50")
    resumed.load(str(tmp_path / "ckpt"))
    torch.testing.assert_close(resumed.reference.logp(resumed.policy, b), start)
    assert not torch.allclose(resumed.policy.evaluate(obs, b.tokens).logp.detach(), start)


def test_the_reference_cache_is_bounded_and_keyed_by_sample_id():
    from rlvla3.workers.reference_policy import ReferencePolicy

    tr = _trainer()
    ref = ReferencePolicy(tr.policy, cache_rows=8)
    _, b = _batch(tr.policy, n=8)
    first = ref.logp(tr.policy, b)
    torch.testing.assert_close(ref.logp(tr.policy, b.take(np.arange(7, -1, -1))), first.flip(0))  # by id, any order
    assert ref.forwards == 8
    other = dataclasses.replace(b.take(np.arange(4)), sample_ids=np.arange(100, 104))
    ref.logp(tr.policy, other)  # 12 rows > 8: the four oldest (ids 0-3) are dropped
    ref.logp(tr.policy, b.take(np.arange(4, 8)))
    assert ref.forwards == 12
    ref.logp(tr.policy, b.take(np.arange(4)))
    assert ref.forwards == 16


def test_nonfinite_loss_skips_the_step():
    tr = _trainer()
    _, b = _batch(tr.policy)
    b.advantages[:] = np.nan
    w = tr.policy.model.gauss_head.weight.detach().clone()
    results = tr.train_batch(b)
    assert results[0].skipped and tr.steps_skipped == 1 and tr.version == 0
    torch.testing.assert_close(tr.policy.model.gauss_head.weight.detach(), w)


def test_stale_samples_use_the_decoupled_objective():
    tr = _trainer("algo.decoupled=true")
    _, b = _batch(tr.policy)
    tr.train_batch(b)  # version 1
    _, stale = _batch(tr.policy, version=0, seed=1)
    r = tr.train_batch(stale)[0]
    assert "behav_weight_mean" in r.metrics  # decoupled PPO ran
    assert r.metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-6)  # first step: the trust region is the current policy


def test_without_decoupling_stale_samples_are_clipped_around_the_behaviour_policy():
    """algo.decoupled=false (the default): plain PPO, the ratio taken to the policy that acted
    (version 0), which the first update has already moved away from."""
    tr = _trainer()
    _, b = _batch(tr.policy)
    tr.train_batch(b)  # version 1
    _, stale = _batch(tr.policy, version=0, seed=1)
    stale.logp = stale.logp - 0.05  # as if the policy that acted gave these tokens less probability
    r = tr.train_batch(stale)[0]
    assert "behav_weight_mean" not in r.metrics
    assert r.metrics["ratio_mean"] > 1.04  # at least exp(0.05) (one token) at the first step


@pytest.mark.parametrize("stale,decoupled", [(False, True), (True, True), (True, False)])
def test_streaming_update_matches_the_whole_batch_update(stale, decoupled):
    """accumulate()+step() runs the same update_epochs passes as train_batch(): same weights.
    Stale samples: train_batch takes the proximal log-probs from a forward of its own, the
    stream from its first pass's forward (the same weights); without decoupling both clip
    around the behaviour policy."""
    cfg = ("algo.update_epochs=2", f"algo.decoupled={str(decoupled).lower()}")
    a, b_tr = _trainer(*cfg), _trainer(*cfg)
    if stale:
        _, first = _batch(a.policy, n=8, seed=5)
        a.train_batch(first)
        b_tr.train_batch(first)
        assert a.version == b_tr.version == 1
    _, batch = _batch(a.policy, n=8)
    res_a = a.train_batch(batch)  # normalises advantages over the batch; the stream hands them normalised
    adv = b_tr._advantages(batch.advantages)
    for lo in (0, 4):
        b_tr.accumulate(batch.take(np.arange(lo, lo + 4)), 8, adv[lo:lo + 4])
    res_b = b_tr.step()
    assert len(res_a) == len(res_b) == 2 and a.updates == b_tr.updates == 2 + 2 * stale
    assert a.version == b_tr.version == 1 + stale
    assert ("behav_weight_mean" in res_b[0].metrics) == (stale and decoupled)  # the decoupled objective ran
    for (k, pa), pb in zip(a.policy.state_dict().items(), b_tr.policy.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("stale", [False, True])
def test_streaming_normalises_over_the_whole_global_batch_exactly(stale):
    """Micro-batches stream in with raw advantages; step() applies the gradient of the
    advantages normalised over the complete global batch: same weights as train_batch().
    (exact needs the decoupled objective: its first pass on stale samples has ratio 1.)"""
    for epochs in (1, 2):
        cfg = (f"algo.update_epochs={epochs}", "algo.decoupled=true")
        a, b_tr = _trainer(*cfg), _trainer(*cfg, "algo.stream_normalization=exact")
        if stale:  # one update first: the batch below is then one version old
            _, first = _batch(a.policy, n=8, seed=5)
            a.train_batch(first)
            b_tr.train_batch(first)
        _, batch = _batch(a.policy, n=8)
        batch.advantages = batch.advantages * 3.0 + 1.5  # far from normalised
        a.train_batch(batch)
        for lo in (0, 4):
            b_tr.accumulate(batch.take(np.arange(lo, lo + 4)), 8)
        b_tr.step()
        for (k, pa), pb in zip(a.policy.state_dict().items(), b_tr.policy.state_dict().values()):
            torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=f"{k} (epochs={epochs})")


def test_streamed_sequence_of_stale_batches_matches_whole_batches():
    """Five global batches, each acted by the policy one version behind (the first 4 rows of
    each fresh), streamed in 3 micro-batches (exact normalisation) or trained whole: the same
    weights after every batch (one-version-stale `full` and `async-rollout` do the same maths)."""
    cfg = ("algo.update_epochs=2", "algo.decoupled=true", "algo.global_batch=12", "algo.micro_batch=4")
    a, b = _trainer(*cfg), _trainer(*cfg, "algo.stream_normalization=exact")
    behav = copy.deepcopy(a.policy)
    for k in range(5):
        _, batch = _batch(behav, n=12, version=behav.version, seed=10 + k)
        batch.versions[:4] = a.version
        batch.advantages = batch.advantages * 2.0 + 0.7
        acted_next = copy.deepcopy(a.policy)
        a.train_batch(batch)
        for lo in (0, 4, 8):
            b.accumulate(batch.take(np.arange(lo, lo + 4)), 12)
        b.step()
        behav = acted_next
        for (key, pa), pb in zip(a.policy.state_dict().items(), b.policy.state_dict().values()):
            torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-3, msg=f"{key} after batch {k}")


def _streamed(tr, batch):
    for lo in (0, 4):
        tr.accumulate(batch.take(np.arange(lo, lo + 4)), 8)
    return tr.step()


def test_streaming_baseline_mode_centres_on_the_previous_batch_mean():
    """The default first pass subtracts the previous streamed batch's mean (0 at first) and
    divides by this batch's exact std: equal to the exact update when the means agree,
    different when they do not, and the baseline carries over to the next batch."""
    a, b_tr = _trainer(), _trainer()
    _, batch = _batch(a.policy, n=8)
    batch.advantages = (batch.advantages - batch.advantages.mean()) * 3.0  # mean 0 = the first baseline
    a.train_batch(batch)
    _streamed(b_tr, batch)
    for (k, pa), pb in zip(a.policy.state_dict().items(), b_tr.policy.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=k)
    assert abs(b_tr.adv_baseline) < 1e-6

    shifted = _batch(a.policy, n=8, seed=3)[1]
    shifted.advantages = shifted.advantages + 1.5
    a2, b2 = _trainer(), _trainer()
    a2.train_batch(shifted)
    res = _streamed(b2, shifted)
    adv = shifted.advantages
    assert res[0].metrics["adv_baseline_offset"] == pytest.approx(float(adv.mean() / adv.std()), rel=1e-4)
    assert not torch.allclose(a2.policy.model.gauss_head.weight, b2.policy.model.gauss_head.weight, atol=1e-5)
    assert abs(b2.adv_baseline - float(np.mean(shifted.advantages))) < 1e-5

    # a batch whose mean equals the carried baseline gets the exact update
    a3, b3 = _trainer(), _trainer()
    b3.adv_baseline = float(np.mean(shifted.advantages))
    a3.train_batch(shifted)
    _streamed(b3, shifted)
    for (k, pa), pb in zip(a3.policy.state_dict().items(), b3.policy.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=k)


def test_stream_normalization_is_checked():
    from rlvla3.runtime.config import ConfigError

    with pytest.raises(ConfigError, match=r"algo.stream_normalization must be one of \['baseline', 'exact'\]"):
        load_config(["preset=tiny-test", "algo.stream_normalization=running"])
    with pytest.raises(ConfigError, match=r"stream_normalization=exact needs algo.decoupled=true"):
        load_config(["preset=tiny-test", "algo.stream_normalization=exact", "algo.decoupled=false"])


@pytest.mark.parametrize("level", ["token", "action", "chunk"])
def test_unexecuted_sub_actions_get_no_gradient(monkeypatch, level):
    """Issue 22: an episode that ends mid-chunk executes k < chunk sub-actions; the others
    never reached the env, so their log-probs must not enter the ratio (zero gradient)."""
    tr = _trainer(f"algo.logprob_level={level}", "algo.ent_coef=0.01")
    chunk, adim = tr.policy.chunk_size, tr.policy.action_dim
    _, b = _batch(tr.policy, n=4)
    b.executed = np.array([1, chunk, 2, chunk])  # samples 0 and 2 ended their episode mid-chunk
    seen = []
    evaluate = tr.policy.evaluate

    def spy(obs, tokens):
        out = evaluate(obs, tokens)
        out.logp.retain_grad()
        out.entropy.retain_grad()
        seen.append(out)
        return out

    monkeypatch.setattr(tr.policy, "evaluate", spy)
    tr._micro_loss(b, b.advantages, None, 1.0)
    for grad in (seen[0].logp.grad, seen[0].entropy.grad):
        g = grad.reshape(4, chunk, adim).abs().sum(-1)
        assert torch.all(g[0, 1:] == 0) and torch.all(g[2, 2:] == 0)  # never executed: no gradient
        assert torch.all(g[0, :1] > 0) and torch.all(g[2, :2] > 0) and torch.all(g[[1, 3]] > 0)
