"""Copy sessions and blobs between stores, and import the old backend's session folders.

Async functions over the two storage ports. Every source (another SessionRepository, a
BlobRepository, or a legacy folder read in a worker thread) becomes `SessionRecord`s or blob
streams, and one writer stores them so that a re-run copies nothing twice: a session whose id
is already live in the target is skipped (`create` raises SessionExists), a blob whose key
exists with the same size is skipped. Nothing here reads settings; `app.cli` wires the stores.

Modules: `records` (the store-independent session record), `report` (progress, tallies and
the summary), `legacy` (reading and mapping the old backend's folders), `stores` (the writer
and the copies into the configured stores, people included), `prune` (expired sessions and orphaned blobs).
"""

from app.migration.legacy import LegacySession, legacy_record, legacy_session_id
from app.migration.prune import SupportsPrune, prune
from app.migration.report import MigrationReport, describe_error
from app.migration.stores import copy_blobs, copy_sessions, copy_users, import_legacy

__all__ = [
    "LegacySession",
    "MigrationReport",
    "SupportsPrune",
    "copy_blobs",
    "copy_sessions",
    "copy_users",
    "describe_error",
    "import_legacy",
    "legacy_record",
    "legacy_session_id",
    "prune",
]
