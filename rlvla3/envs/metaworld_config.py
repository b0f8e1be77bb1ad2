"""MetaWorld settings (`env.metaworld.*`), the task instructions, and the process-wide
benchmark cache. Importing this module does not import MetaWorld or MuJoCo."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from rlvla3.core.config_checks import check, check_choice

BENCHMARKS = ("MT1", "MT10", "MT50")
# Cameras of metaworld 3.0.0's scene (3.1 adds corner4). corner* are defined upside down.
CAMERAS = ("corner", "corner2", "corner3", "topview", "behindGripper", "gripperPOV")
UPSIDE_DOWN = ("corner", "corner2", "corner3")
# corner2 as defined sits ~1.6 m from the table: at 64-128 px the goal marker is 1-3 px and the
# puck a few more. Moved to this position (the camera's orientation unchanged), the table fills
# the frame; the same placement is common in image-based MetaWorld work.
ZOOMED_CAMERA_POS: Dict[str, Tuple[float, float, float]] = {"corner2": (0.75, 0.075, 0.7)}
REWARDS = ("sparse", "dense", "progress")
DENSE_MAX = 10.0  # MetaWorld v3's shaped reward per step is in [0, 10]
NUM_VARIATIONS = 50  # metaworld.MT*: 50 seeded variations (object and goal positions) per task
PATH_LIMIT = 500  # MetaWorld's max_path_length: stepping past it raises
INSTALL_HINT = "install it with `pip install -e .[metaworld]` (see docs/metaworld.md)"

# One instruction per task, written for this project (MetaWorld has none).
INSTRUCTIONS: Dict[str, str] = {
    "assembly-v3": "put the ring onto the peg",
    "basketball-v3": "dunk the ball into the basket",
    "bin-picking-v3": "move the cube from one bin to the other",
    "box-close-v3": "put the lid on the box",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button behind the wall from the top",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "press the button behind the wall",
    "coffee-button-v3": "press the coffee machine's button",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "take the ring off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door by turning the lock",
    "door-open-v3": "open the door",
    "door-unlock-v3": "unlock the door by turning the lock",
    "hand-insert-v3": "push the block into the hole",
    "drawer-close-v3": "close the drawer",
    "drawer-open-v3": "open the drawer",
    "faucet-open-v3": "turn the faucet on",
    "faucet-close-v3": "turn the faucet off",
    "hammer-v3": "hammer the nail into the wall",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "pick-place-wall-v3": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole-v3": "pick the puck out of the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the net",
    "plate-slide-side-v3": "slide the plate sideways into the net",
    "plate-slide-back-v3": "slide the plate back out of the net",
    "plate-slide-back-side-v3": "slide the plate sideways out of the net",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "peg-unplug-side-v3": "unplug the peg from the side",
    "soccer-v3": "kick the ball into the goal",
    "stick-push-v3": "push the thermos with the stick",
    "stick-pull-v3": "pull the thermos with the stick",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck around the wall to the goal",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "reach the goal with the gripper",
    "reach-wall-v3": "reach over the wall to the goal",
    "shelf-place-v3": "place the puck on the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}


@dataclass
class MetaWorldConfig:
    benchmark: str = "MT1"  # MT1 (one task: `task`) | MT10 | MT50
    task: str = "reach-v3"  # MT1's task (the -v3 suffix may be left out)
    task_names: List[str] = field(default_factory=list)  # MT10/MT50: a subset of their tasks; [] = all
    camera: str = "corner2"  # corner | corner2 | corner3 (rotated upright) | topview | behindGripper | gripperPOV
    # The camera's position in metres: [] = the default (corner2 moved close to the table,
    # ZOOMED_CAMERA_POS; other cameras as the XML defines them); or [x, y, z] for the chosen camera
    # (corner2's own XML position is [1.3, -0.2, 1.1]). Its orientation is never changed.
    camera_pos: List[float] = field(default_factory=list)
    image_size: int = 128  # square camera image
    max_steps: int = 200  # low-level steps per episode (the experts need 45-105 on average); <= 500
    # sparse: 1 on success | dense: MetaWorld's shaped reward summed over the chunk (0-10 per step)
    # | progress: sparse plus progress_coef x the change of the shaped reward / 10 over the chunk
    # (potential-based: an episode's progress terms add up to at most progress_coef, so dawdling
    # near the goal earns nothing and ending the episode by success costs nothing). The scripted
    # experts' shaped reward goes 0.0-0.1 until the grasp, 2-5 after it, 7-9 at success (push,
    # pick-place, peg-insert-side): at 1.0 a whole episode's progress is at most success's 1.
    reward: str = "sparse"
    progress_coef: float = 1.0
    # sparse or progress plus reach_coef x the fall of the hand's distance to the task's object
    # (the state's first object: puck, peg, handle or button; the goal for reach), as a fraction
    # of the distance at reset: potential-based, an episode's reach terms add up to at most
    # reach_coef. The shaped reward barely moves before a grasp; this moves from the first step.
    reach_coef: float = 0.0
    num_init_states: int = 40  # of each task's 50 variations, this many train ...
    num_eval_init_states: int = 10  # ... and this many held out for evaluation (disjoint)
    split_seed: int = 0  # seed of the variations (metaworld.MT*(seed=...)) and of the train/eval split
    render_substeps: bool = False  # render every sub-step of a chunk (videos) instead of only the last

    def camera_position(self) -> Tuple[float, ...]:
        """Where the camera is put, or () to leave the XML's position."""
        if self.camera_pos:
            return tuple(float(v) for v in self.camera_pos)
        return ZOOMED_CAMERA_POS.get(self.camera, ())

    def episode_steps(self) -> int:
        return self.max_steps

    def task_list(self) -> List[str]:
        """The env names (`name-v3`) this config trains on, in benchmark order."""
        if self.benchmark == "MT1":
            return [_full_name(self.task)]
        if self.task_names:
            return [_full_name(t) for t in self.task_names]
        from metaworld import env_dict

        return list((env_dict.MT10_V3 if self.benchmark == "MT10" else env_dict.MT50_V3).keys())

    def validate(self, prefix: str = "env.metaworld") -> "MetaWorldConfig":
        check_choice(self.benchmark, BENCHMARKS, f"{prefix}.benchmark")
        check(self.camera in CAMERAS,
              f"{prefix}.camera must be one of {list(CAMERAS)} (metaworld 3.0.0), got {self.camera!r}")
        check(len(self.camera_pos) in (0, 3),
              f"{prefix}.camera_pos must be [] (the default placement) or [x, y, z] in metres, got {self.camera_pos!r}")
        check_choice(self.reward, REWARDS, f"{prefix}.reward")
        check(self.progress_coef >= 0, f"{prefix}.progress_coef must be >= 0, got {self.progress_coef}")
        check(self.reach_coef >= 0, f"{prefix}.reach_coef must be >= 0, got {self.reach_coef}")
        check(self.reach_coef == 0 or self.reward != "dense", f"{prefix}.reach_coef adds to the sparse or "
              f"progress reward; with reward=dense (MetaWorld's own shaping) set it to 0, got {self.reach_coef}")
        check(16 <= self.image_size <= 512, f"{prefix}.image_size must be in [16, 512], got {self.image_size}")
        check(1 <= self.max_steps <= PATH_LIMIT, f"{prefix}.max_steps must be in [1, {PATH_LIMIT}] (MetaWorld "
              f"raises past {PATH_LIMIT} steps), got {self.max_steps}")
        check(self.num_init_states >= 1 and self.num_eval_init_states >= 1
              and self.num_init_states + self.num_eval_init_states <= NUM_VARIATIONS,
              f"{prefix}.num_init_states ({self.num_init_states}) and {prefix}.num_eval_init_states "
              f"({self.num_eval_init_states}) must be >= 1 and add up to at most {NUM_VARIATIONS} "
              "(each task's variations, split without overlap)")
        known = set(INSTRUCTIONS)
        if self.benchmark == "MT1":
            names, key = [self.task], f"{prefix}.task"
        else:
            names, key = list(self.task_names), f"{prefix}.task_names"
        bad = [t for t in names if _full_name(t) not in known]
        check(not bad, f"{key}: unknown MetaWorld task(s) {bad}; known: {sorted(known)}")
        if self.benchmark == "MT10" and names:
            mt10 = {"reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
                    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"}
            out = [t for t in names if _full_name(t) not in mt10]
            check(not out, f"{key}: {out} are not MT10 tasks; MT10: {sorted(mt10)}")
        return self


def _full_name(name: str) -> str:
    name = str(name)
    return name if name.endswith("-v3") else f"{name}-v3"


_BENCH_LOCK = threading.Lock()
_BENCH_CACHE: Dict[Tuple[str, str, int], object] = {}


def import_metaworld():
    from rlvla3.envs.libero_config import set_render_backend

    set_render_backend()  # before MuJoCo is first imported
    try:
        import metaworld
    except ImportError as e:
        raise ImportError(f"MetaWorld is not installed ({e}); {INSTALL_HINT}") from e
    return metaworld


def benchmark(config: MetaWorldConfig):
    """metaworld.MT1/MT10/MT50, built once per process (MT10 takes ~11 s, MT50 ~61 s) and shared."""
    metaworld = import_metaworld()
    key = (config.benchmark, _full_name(config.task) if config.benchmark == "MT1" else "", config.split_seed)
    with _BENCH_LOCK:
        if key not in _BENCH_CACHE:
            if config.benchmark == "MT1":
                _BENCH_CACHE[key] = metaworld.MT1(key[1], seed=config.split_seed)
            else:
                _BENCH_CACHE[key] = getattr(metaworld, config.benchmark)(seed=config.split_seed)
        return _BENCH_CACHE[key]
