"""Config files: option values for a command, from JSON or TOML."""

from __future__ import annotations

import json
import os
from typing import Dict

from .errors import SmplusError


def read_config(path: str, options: Dict[str, object]) -> dict:
    """{option name: value} from `path`; keys are flag names (dashes or underscores)."""
    if not os.path.isfile(path):
        raise SmplusError(f"config file not found: {path}")
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                raise SmplusError(f"{path}: TOML configs need Python 3.11+; use a .json config") from None
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        else:
            with open(path, "rb") as f:
                raw = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise SmplusError(f"config {path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {e}") from None
    if not isinstance(raw, dict):
        raise SmplusError(f"config {path}: must be an object of option names and values")
    values = {}
    for key, value in raw.items():
        if key.startswith("_"):  # comments
            continue
        name = key.lstrip("-").replace("-", "_")
        name = {"images": "images_dir", "out": "out_dir"}.get(name, name)
        if name not in options or name == "config":
            known = ", ".join(sorted(n.replace("_", "-") for n in options if n != "config"))
            raise SmplusError(f"config {path}: unknown option {key!r} (known: {known})")
        values[name] = value
    return values
