"""What every gateway's configuration is made of: secrets that never show, the environment reader
(``NAME`` or the file named by ``NAME_FILE``), and the errors a configuration problem raises.

Each adapter package owns its config class (``adapters/<gateway>/config.py``) with a
``from_env(env)`` that reads its ``PAYRELAY_<GATEWAY>_*`` variables through :class:`Env` and
returns ``None`` when none of them is set. ``service.settings`` iterates the registry
(``adapters.registry``) and never names a gateway's variables itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """A configuration that cannot be used: a plain message naming the variable, never a secret."""

    def __init__(self, message: str, *, variable: str) -> None:
        super().__init__(message)
        self.variable = variable  # the one to change (``check`` reports problems by variable)


class GatewayConfigError(ConfigError):
    """A gateway's own configuration (its keys, its URLs) cannot be used."""


class Secret:
    """A secret string; ``repr``/``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def secrets(value: str | None) -> tuple[Secret, ...]:
    """A comma-separated list of secrets (several at once while one is rotated)."""
    return tuple(Secret(part.strip()) for part in (value or "").split(",") if part.strip())


class Env:
    """The environment payrelay is configured from (variables, and files named by ``*_FILE``)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        """NAME, or the contents of the file named by NAME_FILE; empty counts as unset."""
        value = self._env.get(name)
        if value:
            return value
        path = self._env.get(name + "_FILE")
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}",
                                         variable=f"{name}_FILE") from None
        return None

    def raw(self, name: str) -> str | None:
        """NAME itself, for variables that are a path already (no ``_FILE`` indirection)."""
        return self._env.get(name) or None

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, not {value!r}", variable=name) from None
        if number < minimum:
            raise ConfigError(f"{name} must be at least {minimum}", variable=name)
        return number

    def group(self, label: str, required: Mapping[str, str]) -> dict[str, str] | None:
        """All of a gateway's required variables, or None when none is set; some → error."""
        found = {key: self.get(name) for key, name in required.items()}
        present = {k: v for k, v in found.items() if v is not None}
        if not present:
            return None
        if len(present) < len(found):
            missing = [required[k] for k in found if found[k] is None]
            raise GatewayConfigError(f"{label} is partly configured: also set {', '.join(missing)}",
                                     variable=missing[0])
        return present  # type: ignore[return-value]
