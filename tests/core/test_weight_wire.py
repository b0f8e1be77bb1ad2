"""What a publication carries (generator.weight_dtype): bfloat16 bit patterns through numpy,
read back exactly as bfloat16, half the bytes, and the rule that picks it."""

import numpy as np
import pytest
import torch

from rlvla3.core.types import WeightsMessage
from rlvla3.core.weight_wire import nbytes, pack, unpack, wire_dtype
from rlvla3.runtime.config import ConfigError, load_config


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(64, 32, generator=g), "b": torch.randn(64, generator=g) * 1e-3,
            "steps": torch.tensor([7, 8]), "half": torch.randn(5, generator=g).to(torch.bfloat16)}


def test_float32_travels_exactly():
    s = _state()
    arrays, packed = pack(s, "float32")
    assert packed == {"half"}  # a bfloat16 tensor goes as its bits whatever the setting: numpy has no bf16
    assert all(isinstance(a, np.ndarray) for a in arrays.values()) and arrays["w"].dtype == np.float32
    back = WeightsMessage(1, arrays, packed).tensors()
    assert all(torch.equal(torch.as_tensor(back[k]), s[k]) for k in s)


def test_bfloat16_carries_half_the_float_bytes_and_reads_back_as_the_rounded_values():
    s = _state()
    full, _ = pack(s, "float32")
    arrays, packed = pack(s, "bfloat16")
    assert packed == {"w", "b", "half"}  # the float tensors; integer ones travel as they are
    assert arrays["w"].dtype == np.int16 and arrays["steps"].dtype == np.int64
    assert nbytes(arrays) == nbytes(full) - (64 * 32 + 64) * 2
    back = unpack(arrays, packed)
    assert back["w"].dtype == torch.bfloat16 and torch.equal(back["w"], s["w"].to(torch.bfloat16))
    assert torch.equal(back["b"], s["b"].to(torch.bfloat16)) and torch.equal(back["steps"], s["steps"])
    assert back["w"].float().sub(s["w"]).abs().max() <= s["w"].abs().max() * 2 ** -8  # bf16: 8 bits of mantissa


def test_a_policy_loads_a_bfloat16_publication_into_its_float32_weights():
    from rlvla3.policies import build_policy

    cfg = load_config(["preset=tiny-test"])
    src, dst = build_policy(cfg.policy), build_policy(cfg.policy)
    torch.manual_seed(1)
    for p in src.model.parameters():
        p.data.normal_()
    dst.load_state_dict(WeightsMessage(3, *pack(src.state_dict(), "bfloat16")).tensors())
    for (k, a), b in zip(src.model.state_dict().items(), dst.model.state_dict().values()):
        assert b.dtype == a.dtype  # the generator keeps its own dtype: only the wire was bfloat16
        if a.is_floating_point():
            assert torch.equal(b, a.to(torch.bfloat16).to(a.dtype)), k
        else:
            assert torch.equal(a, b), k


@pytest.mark.parametrize("setting, policy_dtype, transport, want", [
    ("auto", "bfloat16", "object_store", "bfloat16"),  # bf16 autocast: its matmuls cast the weights anyway
    ("auto", "float32", "object_store", "float32"),
    ("auto", "bfloat16", "collective", "float32"),  # the channel sends float32
    ("float32", "bfloat16", "object_store", "float32"),
    ("bfloat16", "float32", "object_store", "bfloat16"),  # asked for: given
])
def test_wire_dtype_rule(setting, policy_dtype, transport, want):
    assert wire_dtype(setting, policy_dtype, transport) == want


def test_bad_weight_dtype_settings_are_refused():
    with pytest.raises(ValueError, match="weight dtype"):
        wire_dtype("float16", "float32")
    with pytest.raises(ConfigError, match="generator.weight_dtype"):
        load_config(["preset=tiny-test", "generator.weight_dtype=float16"])
    with pytest.raises(ConfigError, match="applies to weight_transport=object_store"):
        load_config(["preset=tiny-test", "generator.weight_transport=collective", "generator.weight_dtype=bfloat16"])


def test_a_state_dict_cast_where_it_lives_packs_the_same_bits_as_a_float32_one():
    from rlvla3.policies import build_policy

    policy = build_policy(load_config(["preset=tiny-test"]).policy)
    full = policy.state_dict()
    cast = policy.state_dict(torch.bfloat16)
    assert all(cast[k].dtype == (torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in full.items())
    a, pa = pack(full, "bfloat16")
    b, pb = pack(cast, "bfloat16")
    assert pa == pb and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_trainer_publishes_bfloat16_and_records_its_pack():
    from rlvla3.workers.trainer import Trainer

    trainer = Trainer(load_config(["preset=tiny-test"]), seed=0)
    trainer.set_trace(True)
    msg = trainer.get_weights("bfloat16")
    ref, packed = pack(trainer.policy.state_dict(), "bfloat16")
    assert msg.bf16 == packed and all(np.array_equal(msg.state[k], ref[k]) for k in ref)
    span = [s for s in trainer.timeline() if s.name == "weight_pack"]
    assert len(span) == 1 and span[0].args["mib"] == round(nbytes(ref) / 2**20, 1) and span[0].dur >= 0
