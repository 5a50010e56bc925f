"""pubsub_cli: the ``pubsub`` command line, a thin typer front end over ``core`` and
``plugins`` (the event-replay workbench)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pubsub-workbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
