"""Config files: option values for a command, from JSON or TOML.

The paper's setups ship with the package (smplus/configs/*.json): `--config
msm+` names one, any other value is a file path.
"""

from __future__ import annotations

import json
import os
import pathlib
from importlib import resources
from typing import Dict, List

from .errors import SmplusError


def shipped_configs() -> List[str]:
    """Names of the configs shipped with smplus (the paper's rows)."""
    return sorted(p.name[:-5] for p in resources.files("smplus").joinpath("configs").iterdir()
                  if p.name.endswith(".json"))


def read_config(path: str, options: Dict[str, object]) -> dict:
    """{option name: value} from a file or a shipped config's name; keys are flag names (dashes or underscores)."""
    if os.path.isfile(path):
        source = pathlib.Path(path)
    elif path in shipped_configs():
        source = resources.files("smplus").joinpath("configs", f"{path}.json")
    else:
        raise SmplusError(f"config file not found: {path} (give a file, or one of the shipped configs: "
                          f"{', '.join(shipped_configs())})")
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                raise SmplusError(f"{path}: TOML configs need Python 3.11+; use a .json config") from None
            with source.open("rb") as f:
                raw = tomllib.load(f)
        else:
            with source.open("rb") as f:
                raw = json.load(f)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        e = "nested too deeply" if isinstance(e, RecursionError) else e
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
        values[name] = _single(path, key, name, value, options[name])
    return values


def _single(path: str, key: str, name: str, value, option) -> object:
    """A list is the form of --categories (its names or ids) and of multi-value options; any other option
    takes one value (click would read a list as its text, "['bus', 'car']")."""
    if not isinstance(value, list) or getattr(option, "multiple", False) or getattr(option, "nargs", 1) != 1:
        return value
    if name == "categories" and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v).strip() for v in value)
    what = "a list of category names or ids" if name == "categories" else "one value, not a list"
    raise SmplusError(f"config {path}: {key!r} takes {what}, got {value!r}")
