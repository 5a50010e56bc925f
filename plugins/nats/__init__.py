"""NATS JetStream: the ``nats://`` store and the consumer where JetStream owns delivery
(a group is one durable pull consumer shared by any number of workers), registered as
the ``nats`` scheme of the ``pubsub.stores`` entry-point group. nats-py (the ``nats``
extra) is imported only when a ``nats://`` store is opened."""

from .store import JetStreamEventStore as JetStreamEventStore
from .store import open_nats_store as open_nats_store

__all__ = ["JetStreamEventStore", "open_nats_store"]
