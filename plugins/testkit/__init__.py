"""Test kit: what the pytest plugin's fixtures are made of, for handler tests.

``Recorder`` captures what a bus publishes and what its handlers receive, with
assertions that list what was seen when they fail; ``fail_times`` makes a handler fail
a given number of times before it behaves; ``run_handlers`` runs the handlers of a
module (a ``pubsub run`` TARGET) against a list of events. The fixtures (``pubsub_bus``,
``pubsub_clock``, ...) live in ``plugins.pytest_plugin``, loaded by pytest through the
``pytest11`` entry point.
"""

from .flaky import FailTimes as FailTimes
from .flaky import InjectedFailure as InjectedFailure
from .flaky import fail_times as fail_times
from .recorder import Delivery as Delivery
from .recorder import Recorder as Recorder
from .runner import MakeBus as MakeBus
from .runner import RunHandlers as RunHandlers
from .runner import Target as Target
from .runner import include_targets as include_targets
from .runner import run_handlers as run_handlers

__all__ = [
    "Delivery",
    "FailTimes",
    "InjectedFailure",
    "MakeBus",
    "Recorder",
    "RunHandlers",
    "Target",
    "fail_times",
    "include_targets",
    "run_handlers",
]
