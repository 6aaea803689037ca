"""Console settings remembered between runs (the chosen theme), in the user config dir."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import yaml


def settings_path() -> Path:
    from platformdirs import user_config_dir

    return (
        Path(os.environ.get("ROLLGATE_CONFIG_DIR") or user_config_dir("rollgate")) / "settings.yaml"
    )


def load_settings() -> dict[str, str]:
    with contextlib.suppress(OSError, yaml.YAMLError):
        data = yaml.safe_load(settings_path().read_text())
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def save_setting(key: str, value: str) -> None:
    data = load_settings()
    data[key] = value
    path = settings_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data))
