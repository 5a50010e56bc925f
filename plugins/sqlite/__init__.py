"""SQLite: the embedded durable event store, registered as the ``sqlite`` scheme of the
``pubsub.stores`` entry-point group."""

from .schema import APPLICATION_ID as APPLICATION_ID
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .store import SQLiteEventStore as SQLiteEventStore
from .store import SQLiteStoreStatistics as SQLiteStoreStatistics
from .store import open_sqlite_store as open_sqlite_store

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "SQLiteEventStore",
    "SQLiteStoreStatistics",
    "open_sqlite_store",
]
