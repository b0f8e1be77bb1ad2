"""The SFT command notes when a clone samples an action dimension almost uniformly (issue 23: the
MetaWorld experts' bang-bang labels saturate the binned-Gaussian head's scale)."""
import numpy as np
import torch

from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAPolicy
from rlvla3.runtime.demos import DemoSet
from rlvla3.runtime.sft import train_sft
from rlvla3.runtime.sft_command import spread_note


def _fitted(head, actions):
    torch.manual_seed(0)
    policy = TinyVLAPolicy(TinyVLAConfig(image_size=16, channels=[4, 4], hidden=32, word_dim=4, action_dim=2,
                                         chunk_size=2, action_head=head))
    n = len(actions)
    demos = DemoSet(np.zeros((n, 16, 16, 3), np.uint8), np.zeros((n, 4), np.float32), ["reach the red block"] * n,
                    actions, n, n, n)
    train_sft(policy, demos, epochs=60, batch_size=64, lr=3e-3, seed=0)
    return policy, demos


def _bang_bang(n=128):
    a = np.zeros((n, 2, 2), np.float32)
    a[:, :, 0] = 0.3  # one value: a sharp peak
    a[::2, :, 1], a[1::2, :, 1] = 1.0, -1.0  # the same observation, labels at both bounds
    return a


def test_notes_when_the_gaussian_head_spreads_over_labels_at_both_bounds():
    msg = spread_note(*_fitted("binned_gaussian", _bang_bang()))
    assert "dimension 1:" in msg and "50% at -1 and 50% at +1" in msg and "gaussian_plus_logits" in msg
    assert "dimension 0:" not in msg


def test_no_note_once_the_head_can_fit_both_peaks():
    assert spread_note(*_fitted("gaussian_plus_logits", _bang_bang())) == ""
