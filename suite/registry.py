"""The TASKS and METHODS registries: `@TASKS.register("name")` on a class, `TASKS.create(name)`."""

from __future__ import annotations

import importlib
import pkgutil

from suite.errors import KanbenchError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str):
        def decorator(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._classes)

    def check(self, name: str) -> None:
        if name not in self.names():
            raise KanbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def create(self, name: str):
        self.check(name)
        return self._classes[name]()


TASKS = Registry("task")
METHODS = Registry("method")


def load_plugins() -> None:
    """Import every module of the `tasks` and `methods` packages: a module dropped there
    registers its tasks or methods by being imported."""
    for package_name in ("tasks", "methods"):
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")
