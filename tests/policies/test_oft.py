import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModel  # noqa: E402

from rlvla3.policies import load_policy  # noqa: E402
from rlvla3.policies.oft.config import OFTPolicyConfig  # noqa: E402
from rlvla3.policies.oft.modeling import OFTVLAModel  # noqa: E402
from rlvla3.policies.oft.policy import OFTPolicy  # noqa: E402
from tests.policies.vla_helpers import dims, obs  # noqa: E402


def make(**kw):
    torch.manual_seed(0)
    return OFTPolicy(OFTPolicyConfig(**dims(**kw)))


def test_act_matches_evaluate_and_shapes():
    p = make()
    o = obs(5)
    out = p.act(o)
    assert out.actions.shape == (5, 4, 3) and out.tokens.shape == (5, 12) and out.logp.shape == (5, 12)
    assert np.all(np.abs(out.actions) <= 1) and np.all(out.logp <= 0)
    assert out.tokens.min() >= 0 and out.tokens.max() < 256
    ev = p.evaluate(o, out.tokens)
    np.testing.assert_allclose(ev.logp.detach().numpy(), out.logp, atol=1e-5)
    assert ev.entropy.shape == (5, 12) and ev.values.shape == (5,)
    assert float(ev.entropy.mean()) > 4.0  # near-uniform over 256 bins at init (ln 256 = 5.5)


def test_prompt_padding_does_not_leak_between_rows():
    """Rows with prompts of different lengths give the same greedy actions alone and batched."""
    p = make()
    o = obs(3)
    batched = p.act(o, deterministic=True)
    for i in range(3):
        alone = p.act(o.take([i]), deterministic=True)
        np.testing.assert_array_equal(alone.tokens[0], batched.tokens[i])
        np.testing.assert_allclose(alone.logp[0], batched.logp[i], atol=1e-5)


def test_block_mask_is_causal_over_prefix_and_bidirectional_over_actions():
    valid = torch.tensor([[True, True, False, True, True, True]])
    m = OFTVLAModel.block_mask(valid, n_action=2)[0, 0]
    assert m.shape == (6, 6)
    assert not m[1, 3] and m[3, 1]  # prefix: causal
    assert m[4, 5] and m[5, 4]  # action block: both ways
    assert not m[3, 2] and not m[4, 2] and m[2, 2]  # padded key hidden, but sees itself (finite rows)


def test_action_tokens_decode_in_parallel():
    """The first action token's logits depend on the last action slot (bidirectional block)."""
    p = make()
    x = p._inputs(obs(1))
    before, _ = p.model(**x)
    with torch.no_grad():
        p.model.action_queries.weight[-1] += 1.0
    after, _ = p.model(**x)
    assert not torch.allclose(before[0, 0], after[0, 0])


def test_sft_loss_learns_a_fixed_chunk():
    p = make()
    o = obs(8)
    target = np.tile(np.array([0.5, -0.5, 0.0], np.float32), (8, 4, 1))
    opt = torch.optim.AdamW(p.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = p.sft_loss(o, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0]
    acts = p.act(o, deterministic=True).actions
    assert np.abs(acts - target).max() < 0.05


def test_variants_qwen2_dino_gaussian_head_and_bf16():
    p = make(backbone="qwen2", fuse_dino=True, action_head="binned_gaussian", dtype="bfloat16")
    assert p.core_model.dino is not None
    out = p.act(obs(3))
    assert np.isfinite(out.logp).all() and np.isfinite(out.values).all()
    ev = p.evaluate(obs(3), out.tokens)
    ev.logp.sum().backward()  # gradients flow through the bf16 autocast
    assert any(q.grad is not None for q in p.parameters())


def test_checkpoint_roundtrip_and_auto_classes(tmp_path):
    p = make()
    p.version = 7
    p.save_pretrained(str(tmp_path / "pol"))
    q = load_policy(str(tmp_path / "pol"))
    assert isinstance(q, OFTPolicy) and q.version == 7
    o = obs(4)
    np.testing.assert_allclose(q.act(o, deterministic=True).logp, p.act(o, deterministic=True).logp, atol=1e-6)
    # the HF model alone, through the Auto classes (what a real checkpoint conversion targets)
    p.core_model.save_pretrained(str(tmp_path / "hf"))
    assert AutoConfig.from_pretrained(str(tmp_path / "hf")).model_type == "rlvla3_oft"
    m = AutoModel.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    assert isinstance(m, OFTVLAModel)
    r = OFTPolicy(OFTPolicyConfig(**dims(pretrained=str(tmp_path / "hf"))))
    np.testing.assert_allclose(r.act(o, deterministic=True).logp, p.act(o, deterministic=True).logp, atol=1e-6)


def test_pretrained_with_other_dims_is_refused(tmp_path):
    make().core_model.save_pretrained(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="action tokens"):
        OFTPolicy(OFTPolicyConfig(**dims(chunk_size=8, pretrained=str(tmp_path / "hf"))))


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="policy.oft.size"):
        OFTPolicyConfig(**dims(size="huge")).validate()
    with pytest.raises(ValueError, match="policy.oft.backbone"):
        OFTPolicyConfig(**dims(backbone="gpt2")).validate()


def test_checkpoint_keeps_its_own_shapes(tmp_path):
    """A checkpoint records the transformers config, so it loads even when the named size's
    shapes differ (e.g. after they change in code)."""
    from rlvla3.policies.oft.modeling import hf_config

    cfg = OFTPolicyConfig(**dims())
    hf = hf_config(cfg)
    hf.text_config.num_hidden_layers = 1  # not what size=tiny builds
    torch.manual_seed(0)
    p = OFTPolicy(cfg, model=OFTVLAModel(hf))
    p.save_pretrained(str(tmp_path / "pol"))
    q = load_policy(str(tmp_path / "pol"))
    assert q.core_model.config.text_config.num_hidden_layers == 1
    o = obs(2)
    np.testing.assert_allclose(q.act(o, deterministic=True).logp, p.act(o, deterministic=True).logp, atol=1e-6)
