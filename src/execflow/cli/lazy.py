"""Sub-commands imported when they are run, so each process loads only what it uses.

``execflow run worker open`` needs the pipeline; it does not need FastAPI and Uvicorn
(``serve``, ``run api``), Rich tables (``account``, ``logs stats``) or the simulator
(``demo``). The root group therefore names its sub-commands with where they live,
``"execflow.cli.run:run_app"``, and imports a module when one of its commands is
resolved: a worker process starts with about half the modules and memory it would
carry if the root imported every command module (docs/benchmarks.md, "Memory").

``--help`` lists every command (each is imported to print its one-line help), as does
an unknown command's suggestion: those are the only paths that load them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping

import typer
from typer._click import Command
from typer.core import DEFAULT_MARKUP_MODE
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo

__all__ = ["LazyCommands", "command", "group"]

Loader = Callable[[], Command]


def _attribute(target: str) -> object:
    """``"package.module:name"`` -> the object, importing the module now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def command(name: str, target: str) -> Loader:
    """A loader of the function ``target`` as the command ``name`` (``app.command(name)``)."""

    def load() -> Command:
        callback = _attribute(target)
        if not callable(callback):
            raise TypeError(f"{target} is not a command function")
        # the settings ``app.command`` would pass down from a ``typer.Typer()`` left at its
        # defaults, as the root is
        return get_command_from_info(
            CommandInfo(name=name, callback=callback),
            pretty_exceptions_short=True,
            rich_markup_mode=DEFAULT_MARKUP_MODE,
        )

    return load


def group(
    name: str, target: str, extra: Mapping[str, Loader] | None = None, *, also: str = ""
) -> Loader:
    """A loader of the ``typer.Typer`` ``target`` as the group ``name`` (``app.add_typer``).

    ``extra`` adds commands that live in other modules (``run all`` in the supervisor),
    themselves loaded only when run; ``also`` names a module imported first because it
    adds commands to ``target`` when imported (``logs_read`` to ``logs``).
    """

    def load() -> Command:
        if also:
            importlib.import_module(also)
        typer_app = _attribute(target)
        if not isinstance(typer_app, typer.Typer):
            raise TypeError(f"{target} is not a typer.Typer")
        built = get_group(typer_app)
        built.name = name
        if extra:
            built.commands = LazyCommands(dict(built.commands), extra)
        return built

    return load


class LazyCommands(MutableMapping[str, Command]):
    """A group's commands by name: built ones as given, the others built on first access.

    The iteration order is the built ones', then the loaders' (the order ``--help`` shows).
    """

    def __init__(self, built: Mapping[str, Command], loaders: Mapping[str, Loader]) -> None:
        self._order = [*built, *(name for name in loaders if name not in built)]
        self._built: dict[str, Command] = dict(built)
        self._loaders = dict(loaders)

    def __getitem__(self, name: str) -> Command:
        found = self._built.get(name)
        if found is None:
            loader = self._loaders.get(name)
            if loader is None:
                raise KeyError(name)
            found = self._built[name] = loader()
        return found

    def __setitem__(self, name: str, value: Command) -> None:
        if name not in self._built and name not in self._loaders:
            self._order.append(name)
        self._built[name] = value

    def __delitem__(self, name: str) -> None:
        if name not in self._built and name not in self._loaders:
            raise KeyError(name)
        self._built.pop(name, None)
        self._loaders.pop(name, None)
        self._order.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._loaders
