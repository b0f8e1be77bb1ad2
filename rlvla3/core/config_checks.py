"""ConfigError and the checks every config section uses; each message names the full key."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def check_at_least(section, prefix: str, low: float, *names: str) -> None:
    """`prefix.name >= low` for each named field of `section`."""
    for name in names:
        value = getattr(section, name)
        check(value >= low, f"{prefix}.{name} must be >= {low}, got {value}")


def check_choice(value, choices, key: str) -> None:
    check(value in choices, f"{key} must be one of {list(choices)}, got {value!r}")
