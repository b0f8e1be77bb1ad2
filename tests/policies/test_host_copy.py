"""A policy's tensors on the host in one pass (policies/host_copy.py)."""

import pytest
import torch

from rlvla3.policies.host_copy import ALIGN, host_tensors


def named():
    g = torch.Generator().manual_seed(0)
    return [("w", torch.randn(3, 5, generator=g)), ("t", torch.randn(5, 3, generator=g).t()),  # not contiguous
            ("step", torch.tensor(7, dtype=torch.int64)), ("empty", torch.zeros(0, 4)),
            ("half", torch.randn(7, generator=g).to(torch.bfloat16)), ("mask", torch.tensor([True, False, True]))]


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_one_buffer_holds_every_tensor_cast_as_asked(dtype):
    src = named()
    out = host_tensors(src, dtype, flat=True)
    assert list(out) == [k for k, _ in src]
    base = out["w"].untyped_storage().data_ptr()
    for k, t in src:
        want = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        assert out[k].dtype == want.dtype and out[k].shape == t.shape and torch.equal(out[k], want), k
        assert out[k].untyped_storage().data_ptr() == base  # one buffer
        assert (out[k].data_ptr() - base) % ALIGN == 0, k
    out["w"].add_(1.0)
    assert not torch.equal(out["w"], src[0][1].to(out["w"].dtype))  # a copy, not the live tensor


def test_host_tensors_stay_as_they_were_without_a_gpu():
    src = named()
    out = host_tensors(src)
    assert all(out[k].data_ptr() == t.data_ptr() for k, t in src if t.numel())  # no copy: as before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU's tensors")
def test_gpu_tensors_land_in_pinned_memory_equal():
    src = [(k, t.cuda()) for k, t in named()]
    out = host_tensors(src, torch.bfloat16)
    for k, t in src:
        want = (t.to(torch.bfloat16) if t.is_floating_point() else t).cpu()
        assert out[k].is_pinned() and torch.equal(out[k], want), k


def test_a_policys_state_dict_goes_through_it():
    from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy

    p = TinyVLAPolicy(TinyVLAConfig())
    sd = p.state_dict(torch.bfloat16)
    ref = {k: v.detach().to(torch.bfloat16) if v.is_floating_point() else v for k, v in p.model.state_dict().items()}
    assert list(sd) == list(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
