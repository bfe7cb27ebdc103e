"""Layered settings for every kedge program: defaults < TOML file < environment < flags.

Whatever a user gets wrong becomes one ConfigError line per bad value, naming where the
value came from (file, environment variable or flag), the key, what is expected and
what was found (never for secret keys).
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from kedge.errors import ConfigError

_FILE_DATA: ContextVar[dict[str, Any]] = ContextVar("_FILE_DATA", default={})  # noqa: B039


class _FileSource(PydanticBaseSettingsSource):
    """Hands the already-parsed TOML file to pydantic-settings as the lowest layer."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return _FILE_DATA.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get())


class LayeredSettings(BaseSettings):
    """Base of kedge's settings classes: flags, then environment, then the file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))


S = TypeVar("S", bound=LayeredSettings)


def read_config_file(path: Path, *, required: bool, config_env: str) -> dict[str, Any]:
    """Parse the TOML file, turning every way it can be wrong into a ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"{path}: config file not found; create it or drop --config/{config_env}"
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


class Layers:
    """Where each top-level key came from, for error messages."""

    def __init__(
        self, cls: type[LayeredSettings], path: Path, data: dict[str, Any], flags: dict[str, Any]
    ) -> None:
        self.cls, self.path, self.data, self.flags = cls, path, data, flags
        self.prefix = str(cls.model_config.get("env_prefix", ""))

    def origin(self, top: str) -> str:
        if top in self.flags:
            return f"command line (--{top.replace('_', '-')})"
        env_name = f"{self.prefix}{top.upper()}"
        if env_name in os.environ or any(k.startswith(env_name + "__") for k in os.environ):
            return f"environment variable {env_name}"
        if top in self.data:
            return str(self.path)
        return "settings"

    def known_keys(self, prefix: list[str]) -> list[str]:
        model: type[BaseModel] = self.cls
        for part in prefix:
            ann = model.model_fields[part].annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                model = ann
        return sorted(model.model_fields)

    def describe(self, exc: ValidationError, secret_keys: frozenset[str]) -> str:
        """One line per bad value: origin, dotted key, what was wrong; never a secret."""
        lines = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            key = ".".join(loc)
            where = self.origin(loc[0] if loc else "")
            if err["type"] == "extra_forbidden":
                lines.append(
                    f"{where}: unknown key '{key}' (known keys: {', '.join(self.known_keys(loc[:-1]))})"
                )
                continue
            got = ""
            if loc and loc[0] not in secret_keys and "input" in err:
                shown = repr(err["input"])
                got = f", got {shown[:60]}{'…' if len(shown) > 60 else ''}"
            lines.append(f"{where}: key '{key}': {err['msg'].removeprefix('Value error, ')}{got}")
        return "\n".join(lines)


def load_layered(
    cls: type[S],
    *,
    config: Path | None,
    default: Path,
    config_env: str,
    overrides: dict[str, Any] | None = None,
    secret_keys: frozenset[str] = frozenset(),
) -> tuple[S, Layers]:
    """Build `cls` from all layers; raise ConfigError naming every bad value."""
    env_path = os.environ.get(config_env)
    path = config or (Path(env_path) if env_path else default)
    data = read_config_file(
        path, required=config is not None or env_path is not None, config_env=config_env
    )
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    layers = Layers(cls, path, data, flags)
    token = _FILE_DATA.set(data)
    try:
        return cls(**flags), layers
    except ValidationError as exc:
        raise ConfigError(layers.describe(exc, secret_keys)) from None
    except SettingsError as exc:
        # pydantic-settings could not even parse an environment value (lists are JSON).
        found = re.search(r'field "(\w+)"', str(exc))
        name = found[1] if found else "?"
        raise ConfigError(
            f"{layers.origin(name)}: key '{name}': not valid JSON "
            """(lists and tables in the environment are JSON, e.g. '["a", "b"]')"""
        ) from None
    finally:
        _FILE_DATA.reset(token)
