"""Stale-data PPO probe: does 1-2-version-stale decoupled PPO destabilise a SHARP binned-Gaussian policy?

A contextual bandit (one step, no simulator) with the tiny VLA's action head, rlvla3's own losses,
and the trainer's update schedule, small enough for a laptop CPU (seconds per run).

Task. Context x ~ N(0, I_8). The policy emits one chunk of 8 actions x 4 dims (32 tokens over 256
bins in [-1, 1]) from an MLP trunk and the tiny VLA's `binned_gaussian` head (TinyVLAModel.action_logits,
called verbatim). Target a*(x) = 0.6 tanh(A x) per token. Reward of a chunk = the fraction of its 8
actions whose 4-D error is within tol in every dim (L_inf < tol); 0..1, graded, like a per-step success.
The task is expressed in units of the start sharpness sigma0: tol = 2 sigma0, and the behaviour-cloning
demos are a*(x) + bias(x) + sigma0 * noise with |bias| ~ 1 sigma0 per dim (bias = sigma0 tanh(2 B x)),
so BC gives a policy of width ~sigma0 that is mediocre (reward ~0.5) and RL can gain by re-centering
its mean (and then by sharpening). Scaling the task with sigma0 makes the sigma0=0.03 and 0.13 runs the
same problem in units of the policy's own width: only the absolute sharpness (bins per sigma, the
gradient of log p w.r.t. the head's mean, KL per unit move) differs.

Training, as the rlvla3 trainer does it: rollouts of 1200 samples (300 contexts x 4, advantage =
reward - group mean, then batch-normalised with rlvla3.core.losses.normalize), 2 epochs x 3 minibatches
of 400 = 6 optimizer steps per rollout, AdamW(lr, eps 1e-5, wd 0), grad-norm clip 1, clip 0.2/0.2,
dual clip 3, behaviour-weight cap 2, log-probs summed per action (logprob_level=action; K = 8 ratio
units per sample). Staleness s: the update at trainer version k trains on a rollout drawn by version
max(0, k - s) (s=0 sync; s=1 async-train; s=2 two versions stale), same samples and steps in every case.
s=0 uses ppo_policy_loss; s>0 uses decoupled_ppo_loss with the proximal policy = the trainer's weights
at the start of the update, as rlvla3's Trainer.train_batch does.

Variants (fixes) are small changes to the loss inside this file, rlvla3 is not modified:
  base          rlvla3 decoupled_ppo_loss (mask w > cap)
  targetkl=X    early stop of the update's remaining minibatches once the step's approx_kl > X (CleanRL target_kl,
                checked per minibatch as stable-baselines3 does)
  twosided      also mask w < 1/cap
  klpen=B       + B * exact per-token KL(prox || new) over the 256 bins, mean over tokens
  coupled       plain ppo_policy_loss around the BEHAVIOUR policy (no proximal policy, no w)
  trunc         w clamped at cap instead of masked (truncated IS)
Variants may be joined with '+', e.g. 'twosided+klpen=1'.

Reported per update: eval reward (1024 fixed contexts, one sampled chunk each), approx_kl (the trainer's
k3 at sampled points, per ratio unit = action, mean over the update's steps), exact per-token KL(prox||new)
and KL(behav||new) over the full bin distributions at the end of the update (on 256 of the rollout's contexts),
exact KL(behav||prox) at its start (how far the proximal policy is from the data), fraction of masked
behaviour weights, ratio_max, entropy per token.

Run (from the repo root, with the repo's venv):
  nice -n 10 .venv/bin/python tools/stale_ppo_probe.py --quick                 # < 60 s: sync vs stale1, sigma 0.03, lr 1e-4, 1 seed
  nice -n 10 .venv/bin/python tools/stale_ppo_probe.py --sigmas 0.03 0.13 --lrs 1e-4 1e-5 \
      --variants s0 s1 s2 --seeds 0 1 2 --updates 30 --out /tmp/main.json
  nice -n 10 .venv/bin/python tools/stale_ppo_probe.py --sigmas 0.03 --lrs 1e-4 \
      --variants s0 s1 s1:twosided s1:targetkl=0.05 s1:klpen=1 --seeds 0 1 2 --updates 30
A variant is 's<staleness>[:fix[+fix...]]'.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rlvla3.core import losses as L  # noqa: E402
from rlvla3.core.losses import aggregate_logprobs, decoupled_ppo_loss, kl_estimates, normalize, ppo_policy_loss  # noqa: E402
from rlvla3.policies.action_tokenizer import ActionTokenizer, bins_cross_entropy, bins_logp_entropy, sample_bins  # noqa: E402
from rlvla3.policies.tiny_vla import TinyVLAConfig, TinyVLAModel  # noqa: E402

CHUNK, ADIM, NBINS, CTX = 8, 4, 256, 8
T = CHUNK * ADIM
TOL_Z, BIAS_Z = 2.0, 1.0  # tolerance and BC bias in units of sigma0
N_CTX, GROUP, N_MB, EPOCHS = 300, 4, 3, 2
CLIP, DUAL, CAP, MAX_GN = 0.2, 3.0, 2.0, 1.0


class ToyPolicy(nn.Module):
    """MLP trunk + the tiny VLA's binned-Gaussian head (TinyVLAModel.action_logits itself)."""
    action_logits = TinyVLAModel.action_logits

    def __init__(self, hidden: int = 256, log_sigma0: float = math.log(0.1)):
        super().__init__()
        self.cfg = TinyVLAConfig(action_dim=ADIM, chunk_size=CHUNK, n_bins=NBINS, action_head="binned_gaussian")
        self.trunk = nn.Sequential(nn.Linear(CTX, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.action_head = None
        self.gauss_head = nn.Linear(hidden, T * 2)
        with torch.no_grad():  # start BC near the demos' width (BC still sets the final sigma)
            self.gauss_head.bias.view(T, 2)[:, 1] = log_sigma0
        self.register_buffer("bin_centers", -1.0 + (2.0 * torch.arange(NBINS) + 1.0) / NBINS, persistent=False)

    def forward(self, x):
        return self.action_logits(self.trunk(x))


class Task:
    def __init__(self, seed: int, sigma0: float):
        g = torch.Generator().manual_seed(10_000 + seed)
        self.A = torch.randn(CTX, T, generator=g) / math.sqrt(CTX)
        self.B = torch.randn(CTX, T, generator=g) / math.sqrt(CTX)
        self.sigma0, self.tol = sigma0, TOL_Z * sigma0

    def target(self, x):
        return 0.6 * torch.tanh(x @ self.A)

    def demos(self, x, g):
        bias = BIAS_Z * self.sigma0 * torch.tanh(2.0 * (x @ self.B))
        return (self.target(x) + bias + self.sigma0 * torch.randn(x.shape[0], T, generator=g)).clamp(-1, 1)

    def reward(self, x, actions):
        err = (actions - self.target(x)).abs().view(-1, CHUNK, ADIM).amax(-1)
        return (err < self.tol).float().mean(-1)


TOK = ActionTokenizer(NBINS)
CENTERS = torch.tensor(TOK.centers)


def bc_policy(seed: int, sigma0: float, steps: int, cache_dir: str) -> ToyPolicy:
    path = os.path.join(cache_dir, f"bc_s{seed}_sig{sigma0}_n{steps}.pt")
    torch.manual_seed(seed)
    pol = ToyPolicy(log_sigma0=math.log(max(sigma0, 0.02)))
    if os.path.exists(path):
        pol.load_state_dict(torch.load(path))
        return pol
    task, g = Task(seed, sigma0), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-3)
    for i in range(steps):
        x = torch.randn(256, CTX, generator=g)
        loss = bins_cross_entropy(pol(x), TOK, task.demos(x, g).numpy())
        opt.zero_grad()
        loss.backward()
        opt.step()
    os.makedirs(cache_dir, exist_ok=True)
    torch.save(pol.state_dict(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return pol


def exact_kl(logp_a, logp_b):
    """Per-token KL(a || b) over the bins, mean over (n, T). Inputs: log_softmax (n, T, bins)."""
    return float((logp_a.exp() * (logp_a - logp_b)).sum(-1).mean())


def parse_variant(v: str):
    stale, _, fixes = v.partition(":")
    assert stale.startswith("s"), v
    out = {"stale": int(stale[1:]), "targetkl": None, "twosided": False, "klpen": 0.0, "coupled": False,
           "trunc": False}
    for f in filter(None, fixes.split("+")):
        k, _, val = f.partition("=")
        if k == "base":
            continue
        if k not in out:
            raise SystemExit(f"unknown fix {k!r} in {v!r}")
        out[k] = float(val) if val else True
    return out


def decoupled_variant(new, prox, behav, adv, two_sided: bool, trunc: bool):
    """rlvla3's decoupled_ppo_loss with a two-sided mask or truncation instead of the one-sided mask."""
    loss_el, ratio, clipped, dual, _ = L._clipped_surrogate(new, prox, adv, CLIP, CLIP, DUAL)
    raw_w = torch.exp(prox.detach() - behav.detach())
    if trunc:
        over = torch.zeros_like(raw_w, dtype=torch.bool)
        bw = raw_w.clamp(max=CAP)
    else:
        over = raw_w > CAP
        if two_sided:
            over = over | (raw_w < 1.0 / CAP)
        bw = torch.where(over, torch.zeros_like(raw_w), raw_w)
    w = torch.ones_like(loss_el)
    loss = L._masked_mean(torch.where(over, torch.zeros_like(loss_el), bw * loss_el), w)
    stats = L._common_stats(ratio, new - prox.detach(), clipped, dual, w)
    stats["behav_weight_masked_frac"] = L._stat_mean(over | (raw_w > CAP), w)
    return loss, stats


def run(seed: int, sigma0: float, lr: float, variant: str, updates: int, bc_steps: int, cache_dir: str) -> dict:
    cfg = parse_variant(variant)
    s = cfg["stale"]
    task = Task(seed, sigma0)
    pol = bc_policy(seed, sigma0, bc_steps, cache_dir)
    torch.manual_seed(1000 * seed + 7)
    g = torch.Generator().manual_seed(100 + seed)
    eval_x = torch.randn(1024, CTX, generator=torch.Generator().manual_seed(999))
    opt = torch.optim.AdamW(pol.parameters(), lr=lr, eps=1e-5, weight_decay=0.0)
    snaps = {0: {k: v.clone() for k, v in pol.state_dict().items()}}
    behav_pol = ToyPolicy()

    def evaluate():
        with torch.no_grad():
            lg = pol(eval_x)
            tok, _ = sample_bins(lg, False, 1.0)
            r = task.reward(eval_x, CENTERS[tok])
            lp = F.log_softmax(lg, -1)
            ent = float(-(lp.exp() * lp).sum(-1).mean())
        return float(r.mean()), ent

    r0, ent0 = evaluate()
    hist = [{"update": 0, "eval": r0, "entropy": ent0}]
    agg = lambda t: aggregate_logprobs(t, CHUNK, ADIM, "action")  # noqa: E731
    for k in range(updates):
        bv = max(0, k - s)
        behav_pol.load_state_dict(snaps[bv])
        x = torch.randn(N_CTX, CTX, generator=g).repeat_interleave(GROUP, 0)
        with torch.no_grad():
            lg_b = behav_pol(x)
            tokens, logp_b = sample_bins(lg_b, False, 1.0)
            r = task.reward(x, CENTERS[tokens])
            adv_raw = (r.view(N_CTX, GROUP) - r.view(N_CTX, GROUP).mean(1, keepdim=True)).reshape(-1)
            adv = torch.tensor(normalize(adv_raw.numpy()))
            lp_prox_all = F.log_softmax(pol(x), -1)  # proximal = trainer's weights before the update
            logp_p = lp_prox_all.gather(-1, tokens[..., None]).squeeze(-1)
            lp_b_all = F.log_softmax(lg_b, -1)
        stale = bv < k
        sub = torch.arange(0, len(x), len(x) // 256)[:256]
        kl_bp = exact_kl(lp_b_all[sub], lp_prox_all[sub])
        steps, stop, acc = 0, False, []
        for ep in range(EPOCHS):
            perm = torch.randperm(len(x))
            for idx in perm.chunk(N_MB):
                lg_n = pol(x[idx])
                logp_n, _ = bins_logp_entropy(lg_n, tokens[idx])
                new, behav, prox = agg(logp_n), agg(logp_b[idx]), agg(logp_p[idx])
                if not stale or cfg["coupled"]:
                    loss, st = ppo_policy_loss(new, behav, adv[idx], CLIP, CLIP, DUAL)
                    st["behav_weight_masked_frac"] = 0.0
                elif cfg["twosided"] or cfg["trunc"]:
                    loss, st = decoupled_variant(new, prox, behav, adv[idx], cfg["twosided"], cfg["trunc"])
                else:
                    loss, st = decoupled_ppo_loss(new, prox, behav, adv[idx], CLIP, CLIP, DUAL, CAP)
                if cfg["klpen"] > 0:
                    lp_n_all = F.log_softmax(lg_n, -1)
                    pen = (lp_prox_all[idx].exp() * (lp_prox_all[idx] - lp_n_all)).sum(-1).mean()
                    loss = loss + cfg["klpen"] * pen
                st["kl_behav_k3_tok"] = kl_estimates(logp_b[idx], logp_n.detach())["k3"]
                if cfg["targetkl"] is not None and st["approx_kl"] > cfg["targetkl"]:
                    stop = True  # this minibatch is not applied, nor are the rest (SB3 style)
                    acc.append(st)
                    break
                opt.zero_grad()
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(pol.parameters(), MAX_GN)
                st["grad_norm"] = float(gn)
                if torch.isfinite(gn):
                    opt.step()
                steps += 1
                acc.append(st)
            if stop:
                break
        snaps[k + 1] = {kk: v.clone() for kk, v in pol.state_dict().items()}
        snaps.pop(k + 1 - s - 1, None) if k + 1 - s - 1 > 0 else None
        with torch.no_grad():
            lp_new = F.log_softmax(pol(x[sub]), -1)
        ev, ent = evaluate()
        mean = lambda key: float(np.mean([a[key] for a in acc if key in a]))  # noqa: E731
        hist.append({
            "update": k + 1, "eval": ev, "entropy": ent, "rollout_reward": float(r.mean()), "steps": steps,
            "approx_kl": mean("approx_kl"), "approx_kl_max": float(max(a["approx_kl"] for a in acc)),
            "ratio_max": float(max(a["ratio_max"] for a in acc)), "clip_frac": mean("clip_frac"),
            "masked_frac": mean("behav_weight_masked_frac"), "kl_behav_k3_tok": mean("kl_behav_k3_tok"),
            "kl_prox_new_exact": exact_kl(lp_prox_all[sub], lp_new), "kl_behav_new_exact": exact_kl(lp_b_all[sub], lp_new),
            "kl_behav_prox_exact": kl_bp, "stale": bool(stale)})
    return {"seed": seed, "sigma0": sigma0, "lr": lr, "variant": variant, "hist": hist}


def summarize(runs, tail: int = 3):
    """One row per (sigma0, lr, variant): mean [min, max] over seeds."""
    groups = {}
    for r in runs:
        groups.setdefault((r["sigma0"], r["lr"], r["variant"]), []).append(r)

    # approx_kl .. ratio_max: over the stale updates only (update 1 is fresh in every variant); all updates for s0
    def fmt(vals, p=3, sci=False):
        vals = np.asarray(vals, float)
        f = (lambda v: f"{v:.1e}") if sci else (lambda v: f"{v:.{p}f}")
        return f"{f(vals.mean())} [{f(vals.min())}, {f(vals.max())}]"

    hdr = ("| sigma0 | lr | variant | seeds | eval start | eval end (mean last %d) | best-ever | entropy end | steps/upd "
           "| approx_kl | exact KL(prox->new)/tok | exact KL(behav->new)/tok | exact KL(behav->prox)/tok "
           "| masked frac | ratio_max (max) |" % tail)
    lines = [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for (sig, lr, var), rs in sorted(groups.items()):
        upd = lambda r, key: [h[key] for h in r["hist"][1:]]  # noqa: E731
        stale_upd = lambda r, key: [h[key] for h in r["hist"][1:] if h["stale"] or "s0" == var.split(":")[0]]  # noqa: E731
        lines.append("| " + " | ".join([
            f"{sig}", f"{lr:g}", var, str(len(rs)),
            fmt([r["hist"][0]["eval"] for r in rs]),
            fmt([np.mean([h["eval"] for h in r["hist"][-tail:]]) for r in rs]),
            fmt([max(h["eval"] for h in r["hist"]) for r in rs]),
            fmt([r["hist"][-1]["entropy"] for r in rs], 2),
            fmt([np.mean(upd(r, "steps")) for r in rs], 1),
            fmt([np.mean(stale_upd(r, "approx_kl")) for r in rs]),
            fmt([np.mean(stale_upd(r, "kl_prox_new_exact")) for r in rs]),
            fmt([np.mean(stale_upd(r, "kl_behav_new_exact")) for r in rs]),
            fmt([np.mean(stale_upd(r, "kl_behav_prox_exact")) for r in rs]),
            fmt([np.mean(stale_upd(r, "masked_frac")) for r in rs]),
            fmt([max(stale_upd(r, "ratio_max")) for r in rs], sci=True),
        ]) + " |")
    return "\n".join(lines)


def curves(runs, every: int = 5):
    groups = {}
    for r in runs:
        groups.setdefault((r["sigma0"], r["lr"], r["variant"]), []).append(r)
    n = len(runs[0]["hist"])
    cols = list(range(0, n, every)) + ([n - 1] if (n - 1) % every else [])
    lines = ["| sigma0 | lr | variant | " + " | ".join(f"u{c}" for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for (sig, lr, var), rs in sorted(groups.items()):
        lines.append(f"| {sig} | {lr:g} | {var} | " + " | ".join(
            f"{np.mean([r['hist'][c]['eval'] for r in rs]):.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sync vs stale1, sigma 0.03, lr 1e-4, seed 0, 8 updates, 400 BC steps (a smoke test: the short BC leaves a worse start)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.03])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4])
    ap.add_argument("--variants", nargs="+", default=["s0", "s1", "s2"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--bc-steps", type=int, default=1500)
    ap.add_argument("--cache", default="/tmp/stale_ppo_probe_cache")
    ap.add_argument("--out", default="", help="write every run's per-update history as JSON here")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.quick:
        a.sigmas, a.lrs, a.variants, a.seeds, a.updates, a.bc_steps = [0.03], [1e-4], ["s0", "s1"], [0], 8, 400
    torch.set_num_threads(a.threads)
    runs, t0 = [], time.time()
    for sig in a.sigmas:
        for seed in a.seeds:
            bc_policy(seed, sig, a.bc_steps, a.cache)
        for lr in a.lrs:
            for var in a.variants:
                for seed in a.seeds:
                    t1 = time.time()
                    r = run(seed, sig, lr, var, a.updates, a.bc_steps, a.cache)
                    h = r["hist"]
                    print(f"sigma0={sig} lr={lr:g} {var:<20} seed={seed}: eval {h[0]['eval']:.3f} -> {h[-1]['eval']:.3f}"
                          f"  approx_kl(mean) {np.mean([x['approx_kl'] for x in h[1:]]):.3f}"
                          f"  KL(prox->new) {np.mean([x['kl_prox_new_exact'] for x in h[1:]]):.4f}"
                          f"  ent {h[-1]['entropy']:.2f}  ({time.time() - t1:.1f}s)", flush=True)
                    runs.append(r)
                    if a.out:
                        with open(a.out, "w") as f:
                            json.dump(runs, f)
    print(f"\n{len(runs)} runs in {time.time() - t0:.0f}s\n")
    print(summarize(runs))
    print()
    print(curves(runs, every=max(1, a.updates // 6)))


if __name__ == "__main__":
    main()
