"""The TASKS and METHODS registries: `@TASKS.register("name")` on a class, `TASKS.create(name)`."""

from __future__ import annotations

import importlib
import pkgutil

from kanbench.suite.errors import KanbenchError


class Registry:
    """Plugins of one kind, registered by importing the modules of their package."""

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._classes: dict[str, type] = {}
        self._loaded = False

    def register(self, name: str):
        def decorator(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._classes)

    def check(self, name: str) -> None:
        if name not in self.names():
            raise KanbenchError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def create(self, name: str):
        self.check(name)
        return self._classes[name]()

    def unregister(self, name: str) -> None:
        """Forget `name` (a plugin registered for the length of a test: tests' temp_method)."""
        self._classes.pop(name)

    def get(self, name: str) -> type | None:
        """The class registered as `name`, or None (records of a method since removed)."""
        self.load_plugins()
        return self._classes.get(name)

    def load_plugins(self) -> None:
        """Import every module of the package, once per process: a module dropped there
        registers its plugins by being imported. Subpackages (`methods.layers`, the KAN layer
        library) hold none."""
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.ispkg:
                importlib.import_module(f"{self.package}.{module.name}")


TASKS = Registry("task", "kanbench.tasks")
METHODS = Registry("method", "kanbench.methods")
