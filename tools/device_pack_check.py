"""The trainer's weight pack on the GPU machine: a policy's state dict taken off the device per
tensor (`.cpu()` each, as before) and in one pass into a pinned buffer (policies/host_copy.py),
side by side in one process, then `core/weight_wire.pack` as `Trainer.get_weights` runs it.

    carry [".device/vlapack"]
    mkdir -p /tmp/vp && tar xJf .device/vlapack/vla.tar.xz -C /tmp/vp && \
      PYTHONPATH=/tmp/vp/vla:/tmp/vp/py:$PWD HF_HUB_OFFLINE=1 python3 tools/device_pack_check.py oft-1b $OUT

Writes OUT/pack_POLICY.json and prints it: seconds per call (each way 4 times; the first of the
pinned way allocates its buffer), the bytes, and whether both ways give equal tensors.
"""

import json
import os
import sys
import time

import torch

from rlvla3.core.weight_wire import pack
from rlvla3.policies import build_policy
from rlvla3.runtime.config import load_config


def timed(fn, n=4):
    out, times = None, []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        times.append(round(time.perf_counter() - t0, 4))
    return out, times


def main(name: str, out_dir: str) -> None:
    fam = name.split("-")[0]
    cfg = load_config([f"policy={name}", "policy.device=cuda", f"policy.{fam}.dtype=bfloat16", "sft.enabled=false"])
    t0 = time.perf_counter()
    policy = build_policy(cfg.policy)
    built_s = time.perf_counter() - t0
    model, bf16 = policy.model, torch.bfloat16
    per_tensor, t_old = timed(lambda: {k: v.detach().to(bf16).cpu() if v.is_floating_point() else v.detach().cpu()
                                       for k, v in model.state_dict().items()})
    flat, t_new = timed(lambda: policy.state_dict(bf16))
    _, t_pack = timed(lambda: pack(policy.state_dict(bf16), "bfloat16"))
    res = {"policy": name, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "build_s": round(built_s, 1),
           "tensors": len(flat), "mib": round(sum(t.numel() * t.element_size() for t in flat.values()) / 2**20, 1),
           "per_tensor_s": t_old, "one_pinned_pass_s": t_new, "pack_weights_s": t_pack,
           "pinned": all(t.is_pinned() for t in flat.values()),
           "equal": all(torch.equal(per_tensor[k], flat[k]) for k in per_tensor),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"pack_{name}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))


if __name__ == "__main__":
    main(*sys.argv[1:3])
