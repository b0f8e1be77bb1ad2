import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import PI0ForConditionalGeneration  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from rlvla3.policies import load_policy  # noqa: E402
from rlvla3.policies.pi0.config import PI0PolicyConfig  # noqa: E402
from rlvla3.policies.pi0.modeling import hf_config  # noqa: E402
from rlvla3.policies.pi0.policy import PI0Policy  # noqa: E402
from tests.policies.vla_helpers import dims, obs  # noqa: E402


def make(**kw):
    torch.manual_seed(0)
    return PI0Policy(PI0PolicyConfig(**dims(**kw)))


def test_behaviour_logp_is_recomputed_by_evaluate():
    p = make()
    o = obs(5)
    out = p.act(o)
    K = p.cfg.num_steps
    assert out.actions.shape == (5, 4, 3) and np.all(np.abs(out.actions) <= 1)
    assert out.tokens.shape == (5, (K + 1) * 4 * 3) and out.tokens.dtype == np.float32  # the denoising chain
    ev = p.evaluate(o, out.tokens)
    np.testing.assert_allclose(ev.logp.detach().numpy(), out.logp, atol=1e-4)
    assert ev.logp.shape == (5, 12) and ev.entropy.shape == (5, 12) and ev.values.shape == (5,)


def test_logp_is_the_gaussian_density_of_the_transitions():
    """Deterministic sampling puts every transition at its mean: logp = K * (-log sigma - log(2 pi)/2)."""
    p = make(noise_learnable=False, noise_init=0.1, noise_min=0.05)
    out = p.act(obs(3), deterministic=True)
    expected = p.cfg.num_steps * (-math.log(0.1) - 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(out.logp, expected, rtol=1e-4)
    assert not any(prm.requires_grad for prm in p.core_model.noise_head.parameters())


def test_padded_action_dims_carry_no_noise():
    p = make(max_action_dim=6, max_state_dim=8)
    o = obs(4)
    out = p.act(o)
    K = p.cfg.num_steps
    chain = torch.tensor(out.tokens).view(4, K + 1, 4, 6)
    ev = p.evaluate(o, out.tokens)  # recomputed means; pad dims must equal them exactly
    np.testing.assert_allclose(ev.logp.detach().numpy(), out.logp, atol=1e-4)
    m = p.core_model
    with torch.no_grad():
        x, s = p._inputs(o)
        cache, _ = m.prefix(**x)
        v = m.velocity(s, chain[:, 0], 1.0, cache, x["attention_mask"])
    np.testing.assert_allclose(chain[:, 1, :, 3:], (chain[:, 0] - v / K)[:, :, 3:], atol=1e-5)


def test_policy_gradient_raises_the_sampled_chain_logp():
    p = make()
    o = obs(6)
    out = p.act(o)
    opt = torch.optim.SGD(p.parameters(), lr=1e-4)  # one small step: logp gradients are large
    before = p.evaluate(o, out.tokens).logp.sum(-1)
    (-before.sum()).backward()
    opt.step()
    after = p.evaluate(o, out.tokens).logp.sum(-1)
    assert float((after - before).mean()) > 0


def test_flow_matching_sft_learns_a_fixed_chunk():
    p = make()
    o = obs(8)
    target = np.tile(np.array([0.5, -0.5, 0.0], np.float32), (8, 4, 1))
    opt = torch.optim.AdamW(p.parameters(), lr=1e-3)
    for _ in range(300):
        loss = p.sft_loss(o, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acts = p.act(o, deterministic=True).actions
    assert np.abs(acts - target).mean() < 0.15  # 0.65 at init


def test_checkpoint_roundtrip(tmp_path):
    p = make()
    p.version = 3
    p.save_pretrained(str(tmp_path / "pol"))
    q = load_policy(str(tmp_path / "pol"))
    assert isinstance(q, PI0Policy) and q.version == 3
    o = obs(3)
    torch.manual_seed(5)
    a = p.act(o)
    torch.manual_seed(5)
    b = q.act(o)
    np.testing.assert_allclose(a.actions, b.actions, atol=1e-6)


def _to_lerobot_keys(state: dict) -> dict:
    """transformers PI0 key names -> lerobot's (the inverse of transformers' rename on load)."""
    out = {}
    for k, v in state.items():
        k = k.replace("model.vlm.", "paligemma_with_expert.paligemma.model.", 1)
        k = k.replace("model.dit.", "paligemma_with_expert.gemma_expert.model.", 1)
        k = k.replace("embed_action_time.", "", 1)
        out["model." + k] = v.contiguous()
    return out


def test_lerobot_layout_checkpoint_loads_with_renamed_keys(tmp_path):
    cfg = PI0PolicyConfig(**dims())
    torch.manual_seed(1)
    ref = PI0ForConditionalGeneration(hf_config(cfg))
    d = tmp_path / "lerobot_pi0"
    ref.config.save_pretrained(str(d))
    keys = _to_lerobot_keys(ref.state_dict())
    assert any(k.startswith("model.paligemma_with_expert.gemma_expert.") for k in keys)
    save_file(keys, str(d / "model.safetensors"))
    p = PI0Policy(PI0PolicyConfig(**dims(pretrained=str(d))))
    loaded = p.core_model.pi0.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_lerobot_config_with_unknown_variant_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"type": "pi0", "paligemma_variant": "gemma_7b"}')
    with pytest.raises(ValueError, match="not supported"):
        PI0Policy(PI0PolicyConfig(**dims(pretrained=str(tmp_path))))
