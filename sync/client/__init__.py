"""The kit's sync client: drains the outbox to the central triage server.

It follows the design's sync principles:

- Records go in batches (at most :data:`sync.protocol.MAX_BATCH`); the server answers
  per record. Accepted and already-held records become ``confirmed`` only once their
  receipt verifies with the kit's receipt key; the receipt is stored with the row.
- :func:`classify` is the one place that decides what a failure means: transient
  (connection errors, timeouts, 5xx, 429, an answer that is not the server's, such as a
  Wi-Fi login page) is retried with capped exponential backoff and jitter, honouring
  Retry-After; permanent (TLS, revoked or unknown credentials, other refusals) ends the
  run; a record the server cannot take (413/422) is isolated by splitting the batch and
  set aside with the reason.
- Rows move ``pending -> sent`` in a committed transaction before the request goes out.
  A failure after sending is ambiguous, so before sending those records again the client
  asks the server which of them it already holds (``/have``). A killed process leaves
  rows ``sent``; the next run settles them the same way. Nothing is lost, and the server's
  idempotency means nothing is duplicated.
- One relay at a time: an exclusive ``flock`` on a file next to the kit's database, which
  the kernel releases when the process dies, however it dies.

The package never imports the booth application; the caller passes the SQLAlchemy engine
of the kit's SQLite file (which holds the ``outbox`` table) and the kit's credentials.

Its parts, by concern: :mod:`sync.client.transport` (one request and what its failure
means), :mod:`sync.client.lock` (the relay lock), :mod:`sync.client.run` (the run) and
:mod:`sync.outbox` (the outbox repository, every outbox query).
"""

from sync.client.config import Clock, SyncConfig, utc_now
from sync.client.lock import LOCK_SUFFIX, lock_path, relay_lock
from sync.client.run import Progress, RetryNotice, SyncClient, SyncSummary, sync_outbox
from sync.client.transport import Failure, FailureKind, RequestFailed, Stopped, classify
from sync.outbox import (
    ConfirmedRecord,
    OutboxStatus,
    SetAside,
    clear_confirmed_payloads,
    confirmed_records,
    confirmed_visits,
    outbox_status,
    requeue,
    set_aside_records,
)

__all__ = [
    "LOCK_SUFFIX",
    "Clock",
    "ConfirmedRecord",
    "Failure",
    "FailureKind",
    "OutboxStatus",
    "Progress",
    "RequestFailed",
    "RetryNotice",
    "SetAside",
    "Stopped",
    "SyncClient",
    "SyncConfig",
    "SyncSummary",
    "classify",
    "clear_confirmed_payloads",
    "confirmed_records",
    "confirmed_visits",
    "lock_path",
    "outbox_status",
    "relay_lock",
    "requeue",
    "set_aside_records",
    "sync_outbox",
    "utc_now",
]
