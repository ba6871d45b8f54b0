"""Argument checks: a wrong type is a TypeError naming the method and the parameter."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Sequence


def type_name(value: Any) -> str:
    return type(value).__name__


def wrong(method: str, name: str, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"{method}() argument '{name}' must be {expected}, not {type_name(value)}"
    )


def string(method: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise wrong(method, name, "str", value)
    return value


def optional_string(method: str, name: str, value: Any) -> "str | None":
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong(method, name, "str or None", value)
    return value


def optional_callable(method: str, name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise wrong(method, name, "callable or None", value)
    return value


def boolean(method: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise wrong(method, name, "bool", value)
    return value


def path(method: str, name: str, value: Any) -> str:
    """A str or os.PathLike, as a str with `~` expanded (as Daytona's SDK does)."""
    if isinstance(value, str) or isinstance(value, os.PathLike):
        text = os.fspath(value)
        if isinstance(text, str):
            return os.path.expanduser(text)
    raise wrong(method, name, "str or os.PathLike", value)


def strings(method: str, name: str, value: Any) -> List[str]:
    """A list or tuple of str."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise wrong(method, name, "a list of str", value)
    for item in value:
        if not isinstance(item, str):
            raise TypeError(
                f"{method}() argument '{name}' must be a list of str, "
                f"but holds a {type_name(item)}"
            )
    return list(value)


def optional_strings(method: str, name: str, value: Any) -> List[str]:
    if value is None:
        return []
    return strings(method, name, value)


def flattened(method: str, name: str, values: Sequence[Any]) -> List[str]:
    """Each value a str or a list of str, flattened (Daytona's `*packages`)."""
    out: List[str] = []
    for value in values:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(strings(method, name, value))
        else:
            raise wrong(method, name, "str or a list of str", value)
    return out


def mapping(method: str, name: str, value: Any) -> Dict[str, str]:
    """A mapping of str to str, in its order."""
    if not isinstance(value, Mapping):
        raise wrong(method, name, "a dict of str to str", value)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(
                f"{method}() argument '{name}' must be a dict of str to str, "
                f"but maps {type_name(key)} to {type_name(item)}"
            )
    return dict(value)


def existing(kind: str, path_text: str, missing: str, wrong_kind: str) -> None:
    """ValueError with Daytona's message unless `path_text` is an existing `kind`."""
    if not os.path.exists(path_text):
        raise ValueError(missing)
    ok = os.path.isfile(path_text) if kind == "file" else os.path.isdir(path_text)
    if not ok:
        raise ValueError(wrong_kind)
