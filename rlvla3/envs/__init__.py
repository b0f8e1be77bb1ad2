"""Built-in tabletop env family (fast, numpy-only) for RL post-training of VLA policies."""
from .config import FAMILIES, LatencyConfig, TabletopConfig, to_tabletop_config
from .expert import ScriptedExpert, expert_action, expert_chunk, plan_action
from .latency import LatencyModel
from .render import Renderer
from .sim import SimState, is_success, physics_step
from .tabletop import TabletopEnv
from .tasks import BLOCK_COLOURS, SPLITS, TASKS, ZONE_COLOURS, TaskSpec, build_tasks, initial_state

ENV_ID = "rlvla3/Tabletop-v0"


def _register() -> None:
    # registered so gymnasium.make (and check_env's alternative-render-mode check) can build it
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="rlvla3.envs.tabletop:TabletopEnv")


_register()

__all__ = [
    "ENV_ID", "FAMILIES", "LatencyConfig", "TabletopConfig", "to_tabletop_config", "ScriptedExpert",
    "expert_action", "expert_chunk", "plan_action", "LatencyModel", "Renderer", "SimState", "is_success",
    "physics_step", "TabletopEnv", "BLOCK_COLOURS", "SPLITS", "TASKS", "ZONE_COLOURS", "TaskSpec",
    "build_tasks", "initial_state",
]
