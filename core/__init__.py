"""pubsub core: typed events, the asynchronous bus, policies and store protocols."""

from .errors import PubSubError as PubSubError
from .events import Event as Event
