"""Name -> factory registries with "did you mean ...?" errors."""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar

from .errors import AEPOInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named set of factories; duplicates are rejected, unknown names get suggestions."""

    def __init__(self, kind: str, extra_names: tuple[str, ...] = (), *, sort: bool = True):
        self.kind = kind
        self.extra_names = extra_names  # valid names handled outside the registry
        self.sort = sort  # names() sorted, else in the order of registration
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False):
        """Register `entry` under `name`; usable as a decorator when `entry` is omitted."""

        def add(item: T) -> T:
            if name in self._entries and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = item
            return item

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())

    def names(self) -> list[str]:
        return sorted(self._entries) if self.sort else list(self._entries)

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        raise AEPOInputError(unknown_choice_message(self.kind, name, list(self.extra_names) + self.names()))


def unknown_choice_message(kind: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown {kind} {name!r}.{hint} Available: {', '.join(choices)}."



def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """`(__getattr__, __dir__)` for a package whose public names (`exports`: name -> submodule) are imported on
    first use, so that importing the package does not load every submodule's libraries."""
    import importlib

    def getattr_(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value  # once
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
