"""Typed schemas for TOML tables: dataclasses whose fields declare type, default, unit,
range and choices; ``from_dict`` validates a parsed table against one and reports every
problem with the file, the dotted key and what was expected.

A field is declared with ``option(default, unit=..., doc=..., min=..., max=..., choices=...)``.
Supported types: ``bool``, ``int``, ``float``, ``str``, ``Path`` (resolved against the
file's folder), ``list[T]``, ``tuple[T, ...]``, ``dict`` (free-form table), nested schema
dataclasses, ``list[Schema]`` (arrays of tables), and unions such as ``float | Table``
or ``X | None``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, did_you_mean

REQUIRED = MISSING


def option(default: Any = MISSING, *, unit: str | None = None, doc: str = "", min: float | None = None,
           max: float | None = None, choices: typing.Sequence | None = None, exclusive_min: bool = False):
    """A schema field. Mutable defaults (lists, dicts) are copied per instance."""
    meta = {"unit": unit, "doc": doc, "min": min, "max": max, "choices": tuple(choices) if choices else None,
            "exclusive_min": exclusive_min}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Context:
    """Where a table came from: the file (for messages) and the folder relative paths use."""

    file: str = "<config>"
    base_dir: Path = Path(".")

    def error(self, path: str, message: str) -> ConfigError:
        where = f"`{path}`" if path else "top level"
        return ConfigError(f"{self.file}: {where}: {message}")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"array of {_type_name(args[0])}" if args else "array"
    if tp is type(None):
        return "nothing"
    if dataclasses.is_dataclass(tp):
        return "table"
    if tp is dict:
        return "table"
    if tp is Path:
        return "path (string)"
    return getattr(tp, "__name__", str(tp))


def _got(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, (dict, list)) or len(repr(value)) < 60 else kind
    return f"{kind} {shown}" if shown != kind else kind


def from_dict(cls: type, data: Any, ctx: Context, path: str = ""):
    """Validate ``data`` (a parsed TOML table) against schema dataclass ``cls``."""
    if not isinstance(data, dict):
        raise ctx.error(path, f"expected a table, got {_got(data)}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ctx.error(_join(path, key), f"unknown key{did_you_mean(key, fields)}. Valid keys here: {', '.join(fields) or 'none'}.")
    kwargs = {}
    for name, f in fields.items():
        sub = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], ctx, sub, f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ctx.error(sub, f"is required ({_describe(hints[name], f.metadata)}).")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except ValueError as exc:
            raise ctx.error(path, str(exc)) from None
    return obj


def _describe(tp: Any, meta: typing.Mapping) -> str:
    text = _type_name(tp)
    if meta.get("unit"):
        text += f" in {meta['unit']}"
    return text


def _convert(tp: Any, value: Any, ctx: Context, path: str, meta: typing.Mapping = types.MappingProxyType({})):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        # A value of the kind one member takes (a number for `float | table`) gets that
        # member's own message ("must be > 0 eV, got -4.5"), not a list of every member.
        fitting = [arg for arg in args if _kind_fits(arg, value)]
        if len(fitting) == 1:
            return _convert(fitting[0], value, ctx, path, meta)
        errors = []
        for arg in args:
            try:
                return _convert(arg, value, ctx, path, meta)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ctx.error(path, f"expected {_describe_union(args, meta)}, got {_got(value)}.")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, ctx, path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ctx.error(path, f"expected {_describe(tp, meta)}, got {_got(value)}.")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ctx.error(path, f"expected an array of {len(args)} values, got {len(value)}.")
        item_types = args if origin is tuple and args and args[-1] is not Ellipsis else [args[0] if args else Any] * len(value)
        items = [_convert(t, v, ctx, _join(path, i), meta) for i, (t, v) in enumerate(zip(item_types, value))]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a table, got {_got(value)}.")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {_got(value)}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected an integer{_unit(meta)}, got {_got(value)}.")
        return _check_range(value, ctx, path, meta)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(path, f"expected a number{_unit(meta)}, got {_got(value)}.")
        if not math.isfinite(value):
            raise ctx.error(path, f"expected a finite number{_unit(meta)}, got {value}.")
        return _check_range(float(value), ctx, path, meta)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_got(value)}.")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ctx.error(path, f"`{value}` is not one of {', '.join(map(str, choices))}{did_you_mean(value, choices)}.")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ctx.error(path, f"expected a file path (string), got {_got(value)}.")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (ctx.base_dir / p)
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # programmer error


def _bare_unit(meta: typing.Mapping) -> str:
    """" eV" after a number ("> 0 eV"); units that are words ("iterations") too."""
    return f" {meta['unit']}" if meta.get("unit") else ""


def _kind_fits(tp: Any, value: Any) -> bool:
    """``value`` has the TOML kind ``tp`` takes (numbers for float, tables for a dict or a
    schema, arrays for a list or tuple), whatever its range or content."""
    origin = typing.get_origin(tp)
    if isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, (int, float))
    if tp is int:
        return isinstance(value, int)
    if tp in (str, Path):
        return isinstance(value, str)
    if tp is dict or dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list)
    return False


_KIND_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", dict: "a table",
               Path: "a file path (string)"}


def _describe_union(args, meta: typing.Mapping) -> str:
    """"a number or a table in eV" for ``float | dict | None`` (None: the key may be left out)."""
    words = []
    for arg in args:
        origin = typing.get_origin(arg)
        word = ("a table" if dataclasses.is_dataclass(arg) else f"an {_type_name(arg)}" if origin in (list, tuple)
                else _KIND_WORDS.get(arg, _type_name(arg)))
        if word not in words:
            words.append(word)
    return " or ".join(words) + _unit(meta)


def _unit(meta: typing.Mapping) -> str:
    return f" in {meta['unit']}" if meta.get("unit") else ""


def _check_range(value, ctx: Context, path: str, meta: typing.Mapping):
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("exclusive_min") and value == lo)):
        op = ">" if meta.get("exclusive_min") else ">="
        raise ctx.error(path, f"must be {op} {lo:g}{_bare_unit(meta)}, got {value}.")
    if hi is not None and value > hi:
        raise ctx.error(path, f"must be <= {hi:g}{_bare_unit(meta)}, got {value}.")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ctx.error(path, f"must be one of {', '.join(map(str, choices))}, got {value}.")
    return value


def to_dict(obj: Any) -> Any:
    """A schema instance as plain TOML-ready values (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.init and not f.name.startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def describe_fields(cls: type) -> list[dict]:
    """Name, type, default, unit and doc of each field (for docs and ``--show-defaults``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": to_dict(default),
                    "required": f.default is MISSING and f.default_factory is MISSING,
                    "unit": f.metadata.get("unit"), "doc": f.metadata.get("doc", "")})
    return out


@dataclass
class NoOptions:
    """The options schema of a plugin that takes none."""
