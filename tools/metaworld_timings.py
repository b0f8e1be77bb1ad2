"""Time MetaWorld on this machine: step, step + one render (the env's renderer settings and the
XML's defaults), reset, renderer memory. Used for docs/metaworld.md.

    python tools/metaworld_timings.py [--task push-v3] [--size 128] [--camera corner2] [--n 300]
"""
import argparse
import time

import numpy as np

from rlvla3.envs.libero_config import set_render_backend

set_render_backend()


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--camera", default="corner2")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    import mujoco
    import metaworld

    from rlvla3.envs.metaworld import MetaWorldEnv
    from rlvla3.envs.metaworld_config import MetaWorldConfig

    t = time.perf_counter()
    mt = metaworld.MT1(a.task, seed=0)
    print(f"MT1({a.task}) build: {time.perf_counter() - t:.2f} s")
    env = MetaWorldEnv(MetaWorldConfig(task=a.task, image_size=a.size, camera=a.camera, max_steps=500))
    m0 = rss_mb()
    env.reset(options={"task_id": 0, "init_id": 0})
    print(f"first reset (builds the env and the shared renderer): +{rss_mb() - m0:.0f} MB RSS")
    t = time.perf_counter()
    for i in range(50):
        env.reset(options={"task_id": 0, "init_id": i % 40})
    print(f"reset (incl. one render): {(time.perf_counter() - t) / 50 * 1e3:.1f} ms")
    inner = env._env
    env.reset(options={"task_id": 0, "init_id": 0})
    zero = np.zeros(4)
    t = time.perf_counter()
    for _ in range(a.n):
        inner.step(zero)
    print(f"step without rendering: {(time.perf_counter() - t) / a.n * 1e3:.2f} ms")
    env.reset(options={"task_id": 0, "init_id": 0})
    t = time.perf_counter()
    for _ in range(a.n // 8):
        env.chunk_step(np.zeros((8, 4)))
    print(f"chunk of 8 steps + one render ({a.size}², env settings): "
          f"{(time.perf_counter() - t) / (a.n // 8) * 1e3:.1f} ms")
    env.reset(options={"task_id": 0, "init_id": 0})
    t = time.perf_counter()
    for _ in range(a.n // 3):
        env.chunk_step(np.zeros((1, 4)))
    print(f"step + render ({a.size}², shadows/reflections/MSAA off): {(time.perf_counter() - t) / (a.n // 3) * 1e3:.1f} ms")
    # the XML's defaults: a fresh env of the task and a renderer of its own
    cls = mt.train_classes[a.task]
    raw = cls()
    raw.set_task(mt.train_tasks[0])
    raw.reset()
    m0 = rss_mb()
    r = mujoco.Renderer(raw.model, a.size, a.size)
    print(f"a renderer with the XML's defaults: +{rss_mb() - m0:.0f} MB RSS")
    t = time.perf_counter()
    for _ in range(a.n // 3):
        raw.step(zero)
        r.update_scene(raw.data, camera=a.camera)
        r.render()
    print(f"step + render ({a.size}², the XML's defaults: shadows, reflections, 4x MSAA): "
          f"{(time.perf_counter() - t) / (a.n // 3) * 1e3:.1f} ms")
    r.close()


if __name__ == "__main__":
    main()
