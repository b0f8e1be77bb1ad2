"""`env.*` and `policy.*`: the simulator and the model, and the dims the model takes from the env."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rlvla3.core.config_checks import check, check_choice
from rlvla3.envs.config import TabletopConfig
from rlvla3.envs.factory import ENV_TYPES
from rlvla3.envs.libero_config import LiberoConfig
from rlvla3.envs.metaworld_config import MetaWorldConfig
from rlvla3.policies import FAMILIES, family_config
from rlvla3.policies.oft.config import OFTPolicyConfig
from rlvla3.policies.pi0.config import PI0PolicyConfig
from rlvla3.policies.tiny_vla import TinyVLAConfig

# proprio and action sizes of each env type (the VLAs take unset dims from here)
ENV_DIMS = {"tabletop": dict(proprio_dim=4, action_dim=3), "libero": dict(proprio_dim=8, action_dim=7),
            "metaworld": dict(proprio_dim=4, action_dim=4)}


@dataclass
class EnvConfig:
    type: str = "tabletop"  # tabletop (built-in) | libero (pip install -e .[libero]) | metaworld (.[metaworld])
    tabletop: TabletopConfig = field(default_factory=TabletopConfig)
    libero: LiberoConfig = field(default_factory=LiberoConfig)
    metaworld: MetaWorldConfig = field(default_factory=MetaWorldConfig)

    def validate(self, prefix: str = "env") -> None:
        check_choice(self.type, ENV_TYPES, f"{prefix}.type")
        self.tabletop.validate(f"{prefix}.tabletop")
        self.libero.validate(f"{prefix}.libero")
        if self.type == "metaworld":  # its defaults are valid; checked only when used
            self.metaworld.validate(f"{prefix}.metaworld")


@dataclass
class PolicyConfig:
    type: str = "tiny"  # tiny | oft (OpenVLA-OFT-style) | pi0 (flow policy); `policy=oft-tiny` sets type and size
    init_from: str = ""  # local checkpoint dir (save_pretrained layout); "" = random init / SFT output
    device: str = "cpu"  # torch device for generators and trainer
    tiny: TinyVLAConfig = field(default_factory=TinyVLAConfig)
    oft: OFTPolicyConfig = field(default_factory=OFTPolicyConfig)
    pi0: PI0PolicyConfig = field(default_factory=PI0PolicyConfig)

    def validate(self, prefix: str = "policy") -> None:
        check_choice(self.type, FAMILIES, f"{prefix}.type")
        check(not self.init_from or os.path.isdir(self.init_from),
              f"{prefix}.init_from points to {self.init_from!r}, which is not a directory")
        family_config(self).validate()


def resolve_policy_dims(cfg):
    """The VLAs take their unset (0) image size, proprio and action dims from the env; returns `cfg`."""
    if cfg.policy.type in FAMILIES and cfg.policy.type != "tiny" and cfg.env.type in ENV_DIMS:
        pol, env = family_config(cfg.policy), getattr(cfg.env, cfg.env.type)
        for key, value in dict(image_size=env.image_size, **ENV_DIMS[cfg.env.type]).items():
            if getattr(pol, key) == 0:
                setattr(pol, key, value)
    return cfg
