"""Reading TOML with errors that name file, line and column; writing the TOML subset that
xhsi's configs use (tables, arrays of tables, scalars, arrays, inline tables)."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from .errors import ConfigError

_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_toml(path: str | Path) -> dict:
    """Parse a TOML file. Missing files and syntax errors raise ConfigError naming
    ``file:line:column``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file.") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as a UTF-8 TOML file ({exc}).") from None
    return loads_toml(text, str(path))


def loads_toml(text: str, where: str = "<string>") -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", str(exc))
        if line is None:
            match = _POSITION.search(str(exc))
            if match:
                line, col = int(match.group(1)), int(match.group(2))
            msg = _POSITION.sub("", str(exc)).strip()
        pos = f":{line}:{col}" if line is not None else ""
        raise ConfigError(f"{where}{pos}: TOML syntax error: {msg}.") from None


def parse_value(text: str) -> Any:
    """A command-line value as TOML (``50``, ``1e-6``, ``true``, ``[1, 2]``, ``"a"``);
    anything that is not valid TOML is taken as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        s = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{s}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_scalar(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def format_value(value: Any) -> str:
    """``value`` as TOML text, the inverse of :func:`parse_value` (``--set`` and ``--grid``
    values: ``50``, ``1e-06``, ``"a"``, ``[1, 2]``, ``{ k = 3.0 }``)."""
    return _scalar(value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _scalar(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps_toml(data: dict) -> str:
    """Write a dict as TOML: top-level dicts become tables, lists of dicts arrays of tables,
    deeper dicts inline tables. ``None`` values are left out (TOML has no null)."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, dict) and not _is_table_list(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(kk)} = {_scalar(vv)}" for kk, vv in v.items() if vv is not None]
        elif _is_table_list(v):
            for item in v:
                lines += ["", f"[[{_key(k)}]]"] + [f"{_key(kk)} = {_scalar(vv)}" for kk, vv in item.items() if vv is not None]
    return "\n".join(lines).lstrip("\n") + "\n"
