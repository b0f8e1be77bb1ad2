"""LoRA, meta-device sizes and config plumbing shared by the OFT-style and pi0-style policies."""

import pytest
import torch

pytest.importorskip("peft")

from rlvla3.policies import load_policy  # noqa: E402
from rlvla3.policies.hf_policy import LoraSettings, count_parameters  # noqa: E402
from rlvla3.policies.oft.config import OFTPolicyConfig  # noqa: E402
from rlvla3.policies.oft.modeling import OFTVLAModel, hf_config  # noqa: E402
from rlvla3.policies.oft.policy import OFTPolicy  # noqa: E402
from rlvla3.policies.pi0.config import PI0PolicyConfig  # noqa: E402
from rlvla3.policies.pi0.modeling import hf_config as pi0_hf_config  # noqa: E402
from rlvla3.policies.pi0.policy import PI0Policy  # noqa: E402
from rlvla3.runtime.config import ConfigError, load_config  # noqa: E402
from tests.policies.vla_helpers import dims, obs  # noqa: E402

FAMILIES = [(OFTPolicy, OFTPolicyConfig), (PI0Policy, PI0PolicyConfig)]


def _step(policy, o, tokens, lr=1e-2):
    opt = torch.optim.SGD(policy.parameters(), lr=lr)
    (-policy.evaluate(o, tokens).logp.mean()).backward()
    opt.step()


@pytest.mark.parametrize("cls,cfg_cls", FAMILIES)
def test_lora_trains_adapters_and_heads_only_and_keeps_a_free_reference(cls, cfg_cls):
    torch.manual_seed(0)
    p = cls(cfg_cls(**dims(lora=LoraSettings(enabled=True, rank=4, alpha=8))))
    trainable = {n for n, q in p.model.named_parameters() if q.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert sum(q.numel() for q in p.parameters()) < 0.5 * count_parameters(p.model)
    assert set(p.state_dict()) == trainable  # generators receive only what changes
    o = obs(4)
    out = p.act(o)
    with p.reference():
        ref_before = p.evaluate(o, out.tokens).logp.detach()
    for _ in range(2):
        _step(p, o, out.tokens)
    with p.reference():
        ref_after = p.evaluate(o, out.tokens).logp.detach()
    new = p.evaluate(o, out.tokens).logp.detach()
    torch.testing.assert_close(ref_after, ref_before)  # the frozen base did not move
    assert not torch.allclose(new, ref_after)  # the adapted policy did
    # a second policy with the same base follows through state_dict alone
    torch.manual_seed(0)
    q = cls(cfg_cls(**dims(lora=LoraSettings(enabled=True, rank=4, alpha=8))))
    q.load_state_dict(p.state_dict())
    torch.testing.assert_close(q.evaluate(o, out.tokens).logp.detach(), new)
    # merged for export: a plain model with the adapter folded in gives the same outputs
    merged = p.merged_model()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    plain = cls(cfg_cls(**dims()), model=merged)
    torch.testing.assert_close(plain.evaluate(o, out.tokens).logp.detach(), new, atol=1e-4, rtol=1e-4)


def test_lora_checkpoint_on_a_pretrained_base_holds_only_trainable_tensors(tmp_path):
    torch.manual_seed(0)
    base = OFTPolicy(OFTPolicyConfig(**dims()))
    base.core_model.save_pretrained(str(tmp_path / "base"))
    lora = LoraSettings(enabled=True, rank=4, alpha=8)
    p = OFTPolicy(OFTPolicyConfig(**dims(pretrained=str(tmp_path / "base"), lora=lora)))
    o = obs(3)
    out = p.act(o)
    _step(p, o, out.tokens)
    p.save_pretrained(str(tmp_path / "ckpt"))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert set(saved) == set(p.state_dict())
    q = load_policy(str(tmp_path / "ckpt"))
    torch.testing.assert_close(q.evaluate(o, out.tokens).logp.detach(), p.evaluate(o, out.tokens).logp.detach())
    p.export_adapter(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    fresh = OFTPolicy(OFTPolicyConfig(**dims(pretrained=str(tmp_path / "base"), lora=lora)))
    fresh.load_adapter(str(tmp_path / "adapter"))  # the peft layout round-trips into a new policy
    torch.testing.assert_close(fresh.evaluate(o, out.tokens).logp.detach(), p.evaluate(o, out.tokens).logp.detach())


def test_published_sizes_on_the_meta_device():
    """Full shapes without allocating: OpenVLA(-OFT) 7.541B, pi0 3.5B (lerobot/pi0), within 2%."""
    with torch.device("meta"):
        oft = OFTVLAModel(hf_config(OFTPolicyConfig(size="7b", image_size=224, proprio_dim=8, action_dim=7,
                                                    chunk_size=8)))
        from transformers import PI0ForConditionalGeneration

        pi0 = PI0ForConditionalGeneration(pi0_hf_config(PI0PolicyConfig(size="full", image_size=224, proprio_dim=8,
                                                                         action_dim=7, chunk_size=50)))
    assert oft.dino is not None and oft.vision.config.patch_size == 14
    assert abs(count_parameters(oft) / 7.541e9 - 1) < 0.02
    assert abs(count_parameters(pi0) / 3.5e9 - 1) < 0.02


def test_policy_shorthand_and_dims_from_the_env():
    cfg = load_config(["policy=oft-tiny"])
    assert cfg.policy.type == "oft" and cfg.policy.oft.size == "tiny"
    assert (cfg.policy.oft.image_size, cfg.policy.oft.proprio_dim, cfg.policy.oft.action_dim) == (64, 4, 3)
    cfg = load_config(["policy=pi0-small", "env.type=libero", "env.libero.image_size=128", "sft.enabled=false"])
    assert (cfg.policy.pi0.image_size, cfg.policy.pi0.proprio_dim, cfg.policy.pi0.action_dim) == (128, 8, 7)
    with pytest.raises(ConfigError, match="oft-SIZE"):
        load_config(["policy=oft"])
    with pytest.raises(ConfigError, match="policy.oft.action_dim=3"):
        load_config(["policy=oft-tiny", "policy.oft.action_dim=7"])
    with pytest.raises(ConfigError, match="policy.pi0.size"):
        load_config(["policy=pi0-huge"])


def test_the_kl_reference_of_a_lora_policy_is_its_frozen_base_without_a_copy():
    import types

    from rlvla3.workers.reference_policy import ReferencePolicy

    torch.manual_seed(0)
    p = OFTPolicy(OFTPolicyConfig(**dims(lora=LoraSettings(enabled=True, rank=4, alpha=8))))
    ref = ReferencePolicy(p)
    assert ref._own is None  # algo.kl_ref_coef on a LoRA policy holds no second model
    o = obs(4)
    out = p.act(o)
    mb = types.SimpleNamespace(obs=lambda: o, tokens=out.tokens)
    start = ref.logp(p, mb)
    _step(p, o, out.tokens)
    torch.testing.assert_close(ref.logp(p, mb), start)  # still the base after the adapter moved
    assert not torch.allclose(p.evaluate(o, out.tokens).logp.detach(), start)
