"""A config value a user set that cannot work, and the one way to say so.

Plain Python: the network (``models``), the data modules and the Lightning parts check their own
arguments with :func:`require` without importing Hydra or each other.
"""

from numbers import Number


class ConfigError(ValueError):
    """A config value a user set that cannot work; the message names the key, the value and the fix."""


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise :class:`ConfigError` for ``key=value`` unless ``ok``, saying what is ``allowed``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}. Set it on the command line, e.g. {key}=...")


def is_number(value: object) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)
