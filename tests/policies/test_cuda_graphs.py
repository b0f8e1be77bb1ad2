"""generator.cuda_graphs: buckets, padding and static outputs (an eager stand-in for the capture on the
CPU), the OFT policy served through it, the config's checks, and the real capture where a GPU exists."""

import numpy as np
import pytest
import torch

from rlvla3.policies.cuda_graphs import GraphedForward, bucket_of, buckets_for
from rlvla3.runtime.config import ConfigError, load_config


def eager_capture(fn, static_in, device, pool):
    """The capture's contract without a GPU: fixed output tensors, refilled by each replay."""
    out = tuple(t.clone() for t in fn(**static_in))

    def replay():
        for o, r in zip(out, fn(**static_in)):
            o.copy_(r)

    return replay, out


def test_buckets_double_up_to_the_max_batch():
    assert buckets_for(1) == [1]
    assert buckets_for(5) == [1, 2, 4, 5]
    assert buckets_for(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="max_batch"):
        buckets_for(0)
    assert bucket_of(3, [1, 2, 4, 5]) == 4
    assert bucket_of(5, [5, 1, 2, 4]) == 5
    assert bucket_of(6, [1, 2, 4, 5]) is None


def _fn(x, w):
    return x * 2.0 + w.sum(-1, keepdim=True), x.sum(-1)


def test_padded_replay_matches_the_eager_function_and_reuses_one_capture():
    calls = []

    def counting_capture(fn, static_in, device, pool):
        calls.append({k: v.shape[0] for k, v in static_in.items()})
        return eager_capture(fn, static_in, device, pool)

    g = GraphedForward(_fn, buckets_for(8), torch.device("cpu"), counting_capture)
    for n in (3, 4, 1, 3, 7):
        x, w = torch.randn(n, 5), torch.randn(n, 2)
        got, want = g(x=x, w=w), _fn(x, w)
        assert [t.shape[0] for t in got] == [n, n]
        for a, b in zip(got, want):
            assert torch.allclose(a, b)
    assert calls == [{"x": 4, "w": 4}, {"x": 1, "w": 1}, {"x": 8, "w": 8}]  # one capture per bucket
    assert g.captured == [1, 4, 8] and g.replays == 5 and g.eager_calls == 0


def test_outputs_are_static_until_the_next_call_and_padding_repeats_the_first_row():
    g = GraphedForward(_fn, [4], torch.device("cpu"), eager_capture)
    x1 = torch.arange(6.0).reshape(2, 3)
    out1 = g(x=x1, w=torch.zeros(2, 1))[0]
    first = out1.clone()
    g(x=x1 + 100.0, w=torch.zeros(2, 1))
    assert torch.allclose(out1, first + 200.0)  # a view of the static output: overwritten by the next call
    _, static_in, _ = g._graphs[4]
    assert torch.equal(static_in["x"][2], static_in["x"][0]) and torch.equal(static_in["x"][3], static_in["x"][0])


def test_a_batch_above_every_bucket_runs_eagerly_and_wrong_inputs_are_named():
    g = GraphedForward(_fn, [1, 2], torch.device("cpu"), eager_capture)
    x, w = torch.randn(3, 5), torch.randn(3, 2)
    assert torch.allclose(g(x=x, w=w)[0], _fn(x, w)[0]) and g.eager_calls == 1 and g.captured == []
    g(x=x[:2], w=w[:2])
    with pytest.raises(ValueError, match="input 'x' is"):
        g(x=torch.randn(2, 6), w=w[:2])
    with pytest.raises(ValueError, match="captured with inputs"):
        g(x=x[:2])


def test_oft_policy_acts_the_same_through_the_graphed_forward():
    pytest.importorskip("transformers")
    from rlvla3.policies.oft.config import OFTPolicyConfig
    from rlvla3.policies.oft.policy import OFTPolicy
    from tests.policies.vla_helpers import dims, obs

    torch.manual_seed(0)
    p = OFTPolicy(OFTPolicyConfig(**dims()))
    eager = {n: p.act(obs(n, seed=n), deterministic=True) for n in (1, 3, 4, 6)}
    graphs = p.use_cuda_graphs(4, capture=eager_capture)
    for n, ref in eager.items():
        out = p.act(obs(n, seed=n), deterministic=True)
        assert np.array_equal(out.tokens, ref.tokens) and np.allclose(out.values, ref.values, atol=1e-5)
    assert graphs.captured == [1, 4] and graphs.eager_calls == 1  # 3 padded to 4; 6 above every bucket
    with pytest.raises(ValueError, match="needs the policy on a GPU"):
        OFTPolicy(OFTPolicyConfig(**dims())).use_cuda_graphs(4)


def test_pi0_policy_acts_the_same_through_the_graphed_forward():
    pytest.importorskip("transformers")
    from rlvla3.policies.pi0.config import PI0PolicyConfig
    from rlvla3.policies.pi0.policy import PI0Policy
    from tests.policies.vla_helpers import dims, obs

    torch.manual_seed(0)
    p = PI0Policy(PI0PolicyConfig(**dims()))
    eager = {n: p.act(obs(n, seed=n), deterministic=True) for n in (1, 3)}
    graphs = p.use_cuda_graphs(4, capture=eager_capture)
    for n, ref in eager.items():  # no step noise: log-probs and values do not depend on the draws
        out = p.act(obs(n, seed=n), deterministic=True)
        assert out.actions.shape == ref.actions.shape and out.tokens.shape == ref.tokens.shape
        assert np.allclose(out.logp, ref.logp, atol=1e-5) and np.allclose(out.values, ref.values, atol=1e-5)
    assert not np.allclose(p.act(obs(3, seed=3)).logp, eager[3].logp)  # the noise scale reaches the chain
    assert graphs.captured == [1, 4] and graphs.replays == 3
    inputs, state = p._inputs(obs(4))  # the same draws give the same chain as the eager function
    scale = torch.ones(4, 1, 1)
    torch.manual_seed(7)
    want = PI0Policy._act_core(p, state=state, noise_scale=scale, **inputs)
    torch.manual_seed(7)
    got = p._infer(state=state, noise_scale=scale, **inputs)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))


def test_generator_cuda_graphs_is_checked_before_any_work():
    with pytest.raises(ConfigError, match="generator.cuda_graphs.*policy.type=oft or pi0"):
        load_config(["generator.cuda_graphs=true"])  # the tiny policy on the CPU
    with pytest.raises(ConfigError, match="policy.device=cuda"):
        load_config(["generator.cuda_graphs=true", "policy=oft-tiny"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("family", ["oft", "pi0"])
def test_real_capture_follows_in_place_weight_updates(family):
    pytest.importorskip("transformers")
    from rlvla3.policies.oft.config import OFTPolicyConfig
    from rlvla3.policies.oft.policy import OFTPolicy
    from rlvla3.policies.pi0.config import PI0PolicyConfig
    from rlvla3.policies.pi0.policy import PI0Policy
    from tests.policies.vla_helpers import dims, obs

    cls, cfg_cls = (OFTPolicy, OFTPolicyConfig) if family == "oft" else (PI0Policy, PI0PolicyConfig)
    torch.manual_seed(0)
    p = cls(cfg_cls(**dims()), device="cuda")
    twin = cls(cfg_cls(**dims()), device="cuda")
    twin.load_state_dict(p.state_dict())
    p.use_cuda_graphs(4)
    o = obs(3)
    a, b = p.act(o, deterministic=True), twin.act(o, deterministic=True)
    assert np.allclose(a.values, b.values, atol=1e-4) and np.allclose(a.logp, b.logp, atol=1e-4)
    if family == "oft":
        assert np.array_equal(a.tokens, b.tokens)
    new = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in p.state_dict().items()}
    p.load_state_dict(new)  # the generator's swap: in place, so the captured graph reads the new weights
    twin.load_state_dict(new)
    assert np.allclose(p.act(o, deterministic=True).values, twin.act(o, deterministic=True).values, atol=1e-4)
    assert np.isfinite(p.act(o).logp).all()  # sampled: fresh draws on each replay


def test_bench_policy_times_the_graphed_forward_beside_the_eager_one(monkeypatch):
    pytest.importorskip("transformers")
    from functools import partialmethod

    from rlvla3.bench.policy_bench import bench_graphs, table
    from rlvla3.policies.oft.config import OFTPolicyConfig
    from rlvla3.policies.oft.policy import OFTPolicy
    from tests.policies.vla_helpers import dims

    monkeypatch.setattr(OFTPolicy, "use_cuda_graphs", partialmethod(OFTPolicy.use_cuda_graphs, capture=eager_capture))
    torch.manual_seed(0)
    g = bench_graphs(OFTPolicy(OFTPolicyConfig(**dims())), [1, 3], 0.01)
    assert [r["batch"] for r in g["inference"]] == [1, 3] and all(r["samples_per_s"] > 0 for r in g["inference"])
    assert g["buckets"] == [1, 3] and g["greedy_tokens_equal"] == 1.0 and g["eager_calls"] == 0
    text = table([{"label": "oft-tiny", "params_total": 1, "params_trainable": 1, "dtype": "float32",
                   "inference": [], "training": [], "cuda_graphs": g}])
    assert "oft-tiny, CUDA graphs | | | float32 | 3 |" in text and "action tokens equal 100.0%" in text
    assert g["greedy_logp_max_abs_diff"] < 1e-4


def test_a_generator_captures_every_bucket_at_start_and_reports_its_replays(monkeypatch):
    pytest.importorskip("transformers")
    from functools import partialmethod

    from rlvla3.policies.oft.policy import OFTPolicy
    from rlvla3.workers.async_generator import AsyncGenerator
    from rlvla3.workers.generator import Generator
    from tests.policies.vla_helpers import obs

    monkeypatch.setattr(OFTPolicy, "use_cuda_graphs", partialmethod(OFTPolicy.use_cuda_graphs, capture=eager_capture))
    cfg = load_config(["policy=oft-tiny", "policy.oft.image_size=32", "env.tabletop.image_size=32"]).policy
    gen = Generator(0, cfg, seed=0, cuda_graph_batch=5)
    assert gen.graphs.captured == [1, 2, 4, 5]  # before any request
    assert gen.stats()["graph_capture_s"] > 0 and gen.stats()["graph_replays"] == 4  # the start's warm-up acts
    gen.infer_batch(obs(3, proprio=cfg.oft.proprio_dim))
    gen.infer_batch(obs(7, proprio=cfg.oft.proprio_dim))
    st = gen.stats()
    assert (st["graph_buckets"], st["graph_replays"], st["graph_eager_calls"]) == (4, 5, 1)
    assert "graph_replays" not in Generator(0, cfg, seed=0).stats()  # off: no graph keys
    agen = AsyncGenerator(0, cfg, 0, 1, max_batch=2, max_wait_ms=1.0, cuda_graph_batch=2)
    assert agen.replica.graphs.captured == [1, 2]


def test_bench_policy_compares_pi0_by_log_probs(monkeypatch):
    pytest.importorskip("transformers")
    from functools import partialmethod

    from rlvla3.bench.policy_bench import bench_graphs
    from rlvla3.policies.pi0.config import PI0PolicyConfig
    from rlvla3.policies.pi0.policy import PI0Policy
    from tests.policies.vla_helpers import dims

    monkeypatch.setattr(PI0Policy, "use_cuda_graphs", partialmethod(PI0Policy.use_cuda_graphs, capture=eager_capture))
    torch.manual_seed(0)
    g = bench_graphs(PI0Policy(PI0PolicyConfig(**dims())), [2], 0.01)
    assert g["greedy_tokens_equal"] is None and g["greedy_logp_max_abs_diff"] < 1e-4  # chains start from fresh noise
