"""LIBERO settings (`env.libero.*`) and the process set-up it needs before import.

Importing LIBERO or MuJoCo must not prompt or download anything: the rendering backend is
chosen before MuJoCo loads (EGL, the GPU or Mesa's llvmpipe; OSMesa as the fallback), and
LIBERO's config directory is pointed at a writable cache so it never asks on stdin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List

from rlvla3.core.config_checks import check, check_at_least, check_choice

SUITE_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
INSTALL_HINT = "install it with `pip install -e .[libero]` (see docs/libero.md)"


@dataclass
class LiberoConfig:
    suite: str = "libero_spatial"  # libero_spatial | libero_object | libero_goal | libero_10 | libero_90
    task_ids: List[int] = field(default_factory=list)  # tasks of the suite to use; [] = all
    image_size: int = 128  # square camera images (agentview and wrist)
    max_steps: int = 0  # low-level steps per episode; 0 = the suite's usual limit
    num_init_states: int = 50  # fixed initial states per task used by training (the benchmark has 50)
    num_eval_init_states: int = 50  # fixed initial states per task used by evaluation
    settle_steps: int = 10  # no-op steps after a reset while objects settle (not counted in the episode)

    def episode_steps(self) -> int:
        return self.max_steps or SUITE_STEPS[self.suite]

    def validate(self, prefix: str = "env.libero") -> "LiberoConfig":
        check_choice(self.suite, sorted(SUITE_STEPS), f"{prefix}.suite")
        check_at_least(self, prefix, 16, "image_size")
        check_at_least(self, prefix, 0, "settle_steps", "max_steps")
        for key in ("num_init_states", "num_eval_init_states"):
            check(1 <= getattr(self, key) <= 50,
                  f"{prefix}.{key} must be in [1, 50] (the benchmark's fixed states), got {getattr(self, key)}")
        return self


def set_render_backend() -> None:
    """MuJoCo binds its GL backend when first imported: call before anything imports it."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def prepare_libero_runtime() -> None:
    """Environment variables LIBERO and MuJoCo read at import; idempotent."""
    set_render_backend()
    if "LIBERO_CONFIG_PATH" not in os.environ:  # upstream LIBERO asks on stdin without one
        path = os.path.join(os.path.expanduser("~"), ".cache", "rlvla3", "libero")
        os.makedirs(path, exist_ok=True)
        os.environ["LIBERO_CONFIG_PATH"] = path
    try:
        import libero.libero  # noqa: F401
    except ImportError as e:
        raise ImportError(f"LIBERO is not installed ({e}); {INSTALL_HINT}") from e


def preflight_gl() -> str:
    """Render one frame of a trivial MuJoCo scene with the chosen backend; return its name
    or raise with the fix. Run it in a fresh process: MuJoCo binds the backend on import."""
    prepare_libero_runtime()
    backend = os.environ["MUJOCO_GL"]
    try:
        import mujoco

        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><light pos='0 0 1'/><geom type='sphere' "
                                               "size='.1' rgba='1 0 0 1'/></worldbody></mujoco>")
        renderer = mujoco.Renderer(model, 16, 16)
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        renderer.update_scene(data)
        frame = renderer.render()
        renderer.close()
    except Exception as e:  # any GL failure: say what to install or switch
        raise RuntimeError(
            f"MuJoCo cannot render with MUJOCO_GL={backend}: {e}. Fix: on a GPU machine install the NVIDIA EGL "
            "driver; on a CPU machine `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri` (EGL on llvmpipe) or "
            "`apt-get install libosmesa6` and set MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa") from e
    if frame.max() == 0:
        raise RuntimeError(f"MuJoCo rendered an empty frame with MUJOCO_GL={backend}")
    return backend
