import numpy as np
import pytest
import torch

from rlvla3.core.types import ObsBatch
from rlvla3.policies import load_policy
from rlvla3.policies.action_tokenizer import ActionTokenizer
from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy


def small_cfg(**kw):
    return TinyVLAConfig(image_size=32, channels=[8, 16], hidden=32, **kw)


def obs(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return ObsBatch(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                    rng.normal(size=(n, 4)).astype(np.float32), ["reach the red block"] * (n - 1) + ["push it"])


def test_action_tokenizer_roundtrip_and_edges():
    tok = ActionTokenizer(256)
    a = np.linspace(-1, 1, 1001)
    ids = tok.encode(a)
    assert ids.min() == 0 and ids.max() == 255
    assert np.max(np.abs(tok.decode(ids) - a)) <= 1.0 / 256 + 1e-6  # half a bin width
    assert tok.encode(np.array([-5.0, 5.0])).tolist() == [0, 255]  # clipped


def test_act_shapes_and_logp_match_evaluate():
    torch.manual_seed(0)
    p = TinyVLAPolicy(small_cfg())
    o = obs(5)
    out = p.act(o)
    T = p.cfg.chunk_size * p.cfg.action_dim
    assert out.actions.shape == (5, p.cfg.chunk_size, p.cfg.action_dim)
    assert out.tokens.shape == (5, T) and out.logp.shape == (5, T) and out.values.shape == (5,)
    assert np.all(np.abs(out.actions) <= 1)
    assert np.all(out.logp <= 0)
    ev = p.evaluate(o, out.tokens)
    # GroupNorm has no batch statistics, so train/eval mode give the same log-probs.
    np.testing.assert_allclose(ev.logp.detach().numpy(), out.logp, atol=1e-5)
    assert ev.entropy.shape == (5, T)
    # a freshly initialised head is broad: nearly uniform over the 256 bins
    assert float(ev.entropy.detach().mean()) > 0.9 * np.log(256)
    free = TinyVLAPolicy(small_cfg(action_head="logits"))
    assert float(free.evaluate(o, out.tokens).entropy.detach().mean()) == pytest.approx(np.log(256), rel=0.01)


def test_deterministic_act_is_argmax_and_repeatable():
    p = TinyVLAPolicy(small_cfg())
    o = obs(3)
    a1, a2 = p.act(o, deterministic=True), p.act(o, deterministic=True)
    np.testing.assert_array_equal(a1.tokens, a2.tokens)
    ev = p.evaluate(o, a1.tokens)
    logits, _ = p.model(*p._inputs(o))
    np.testing.assert_array_equal(logits.argmax(-1).numpy(), a1.tokens)
    assert ev.logp.shape == (3, 12)


def test_evaluate_has_gradients():
    p = TinyVLAPolicy(small_cfg())
    o = obs(2)
    ev = p.evaluate(o, p.act(o).tokens)
    (ev.logp.sum() + ev.values.sum()).backward()
    assert p.model.gauss_head.weight.grad is not None
    assert float(p.model.gauss_head.weight.grad.abs().sum()) > 0


def test_save_load_roundtrip(tmp_path):
    p = TinyVLAPolicy(small_cfg())
    p.version = 7
    p.save_pretrained(str(tmp_path / "pol"))
    q = load_policy(str(tmp_path / "pol"))
    assert q.version == 7 and q.cfg == p.cfg
    o = obs(4)
    np.testing.assert_array_equal(p.act(o, deterministic=True).tokens, q.act(o, deterministic=True).tokens)


def test_truncated_weights_fail_with_file_name(tmp_path):
    p = TinyVLAPolicy(small_cfg())
    p.save_pretrained(str(tmp_path / "pol"))
    w = tmp_path / "pol" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_policy(str(tmp_path / "pol"))


def test_bad_config_names_field():
    with pytest.raises(ValueError, match="policy.image_size"):
        TinyVLAConfig(image_size=30, channels=[8, 16]).validate()


def test_value_loss_does_not_reach_policy_features_when_detached():
    p = TinyVLAPolicy(small_cfg())
    o = obs(3)
    ev = p.evaluate(o, p.act(o).tokens)
    ev.values.sum().backward()
    assert p.model.value_head[0].weight.grad is not None
    assert p.model.blocks[0].conv.weight.grad is None  # encoder untouched by the critic
    q = TinyVLAPolicy(small_cfg(value_detach=False))
    ev = q.evaluate(o, q.act(o).tokens)
    ev.values.sum().backward()
    assert q.model.blocks[0].conv.weight.grad is not None


def test_sampled_tokens_follow_the_distribution_and_never_an_empty_bin():
    """Inverse-CDF sampling: frequencies match the softmax (chi-square over 60k draws), a bin
    with zero probability is never drawn, and the temperature sharpens the draws."""
    from rlvla3.policies.action_tokenizer import sample_bins

    torch.manual_seed(0)
    logits = torch.tensor([0.0, 1.0, -1.0, 2.0, -1e4, 0.5])  # bin 4 has no mass in float32
    batch = logits.expand(1000, 60, 6).clone()
    tokens, logp = sample_bins(batch, deterministic=False, temperature=1.0)
    counts = torch.bincount(tokens.flatten(), minlength=6).double()
    p = torch.softmax(logits.double(), -1)
    assert counts[4] == 0
    keep = p > 1e-12
    expected = p[keep] * counts.sum()
    chi2 = float((((counts[keep] - expected) ** 2) / expected).sum())
    assert chi2 < 20.5, (chi2, counts)  # 5 degrees of freedom: p < 0.001
    assert torch.allclose(logp, torch.log_softmax(logits, -1)[tokens])
    cold, _ = sample_bins(batch, deterministic=False, temperature=0.1)
    assert (cold == 3).double().mean() > 0.99
    # a row whose last bins are empty and whose cdf rounds onto its total still draws a bin with mass
    edge = torch.full((1, 200000, 256), -1e4)
    edge[..., 0] = 0.0
    assert (sample_bins(edge, deterministic=False, temperature=1.0)[0] == 0).all()
    with pytest.raises(ValueError, match="not finite"):
        sample_bins(torch.full((1, 2, 6), float("nan")), deterministic=False, temperature=1.0)
