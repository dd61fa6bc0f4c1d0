"""The run: one drain of the outbox, in batches, until it is empty, a failure ends it,
the caller stops it or its time is up (see :mod:`sync.client`)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine

from sync import protocol as p
from sync.client.config import Clock, SyncConfig, utc_now
from sync.client.lock import lock_path, relay_lock
from sync.client.transport import Failure, RequestFailed, Stopped, Transport, short
from sync.outbox import Outbox, QueuedRow, SetAside, utc_iso

if TYPE_CHECKING:
    import requests
    from tenacity import RetryCallState

log = logging.getLogger("sync.client")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RetryNotice:
    """Told to ``on_retry`` before each wait: the failure and how long until the next try."""

    attempt: int
    wait: float
    failure: Failure


@dataclass
class SyncSummary:
    """What one run did. ``confirmed`` includes ``already_there``."""

    sent: int = 0
    """Records put on the wire (each counted once, however many tries it took)."""
    confirmed: int = 0
    already_there: int = 0
    conflicts: list[SetAside] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    still_unsent: int = 0
    set_aside_total: int = 0
    """Set-aside rows in the outbox now, from this run and earlier ones."""
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    busy: bool = False
    """Another relay held the outbox; this run did nothing."""
    stopped: bool = False
    """Ended early by the stop event or the time bound."""
    withdrawn_on_slip_page: list[str] = field(default_factory=list)
    """Codes whose withdrawal on the slip's page this run applied on the kit."""

    @property
    def all_confirmed(self) -> bool:
        """Every record in the outbox is confirmed by a verified receipt."""
        return not self.busy and self.still_unsent == 0 and self.set_aside_total == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.all_confirmed else 1

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "confirmed": self.confirmed,
            "already_there": self.already_there,
            "conflicts": [vars(c) for c in self.conflicts],
            "set_aside": [vars(s) for s in self.set_aside],
            "still_unsent": self.still_unsent,
            "set_aside_total": self.set_aside_total,
            "last_error": self.last_error,
            "next_attempt_at": utc_iso(self.next_attempt_at) if self.next_attempt_at else None,
            "busy": self.busy,
            "stopped": self.stopped,
            "withdrawn_on_slip_page": self.withdrawn_on_slip_page,
            "all_confirmed": self.all_confirmed,
        }


@dataclass
class _Item:
    row_id: int
    record_id: str
    record_type: str
    visit_id: str | None
    content_hash: str
    envelope: p.Envelope | None = None


def _item(row: QueuedRow) -> tuple[_Item, str]:
    return _Item(row.row_id, row.record_id, row.record_type, row.visit_id, row.content_hash), (
        row.payload
    )


class SyncClient:
    """Drains one kit's outbox. One instance may be reused run after run by one thread."""

    def __init__(
        self,
        engine: Engine,
        credentials: p.KitCredentials,
        config: SyncConfig | None = None,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self.credentials = credentials
        self.config = config or SyncConfig()
        self.clock = clock
        self.outbox = Outbox(engine)
        self._lock_path = lock_path(engine)
        self.transport = Transport(credentials, self.config)

    def close(self) -> None:
        self.transport.close()

    def _post(self, run: _Run, path: str, body: bytes) -> requests.Response:
        response = self.transport.post(path, body, deadline=run.deadline)
        run.last_failure = None
        return response

    def _retrying(self, run: _Run) -> Any:
        """Tenacity's loop for one request: transient failures only, within the run's time."""
        from tenacity import Retrying, retry_if_exception, wait_random_exponential

        cfg = self.config
        jitter = wait_random_exponential(multiplier=cfg.backoff_initial, max=cfg.backoff_max)

        def wait(state: RetryCallState) -> float:
            backoff = float(jitter(state))
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RequestFailed) and error.failure.retry_after is not None:
                return max(error.failure.retry_after, backoff)
            return backoff

        def stop(state: RetryCallState) -> bool:
            if run.stop.is_set() or state.attempt_number >= cfg.attempts:
                return True
            return time.monotonic() + state.upcoming_sleep >= run.deadline

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RequestFailed):
                run.note(error.failure)
                log.info("sync: %s; retrying in %.1f s", error.failure.reason, state.upcoming_sleep)
                if run.on_retry is not None:
                    run.on_retry(
                        RetryNotice(state.attempt_number, state.upcoming_sleep, error.failure)
                    )

        return Retrying(
            retry=retry_if_exception(
                lambda e: isinstance(e, RequestFailed) and e.failure.transient
            ),
            wait=wait,
            stop=stop,
            sleep=run.pause,
            before_sleep=before_sleep,
            reraise=True,
        )

    # --- the run ------------------------------------------------------------------

    def run(
        self,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
    ) -> SyncSummary:
        """Drain the outbox once: until it is empty, a failure ends the run, ``stop`` is
        set, or ``config.total_time`` is up.

        ``progress(done, total)``: records settled (confirmed or set aside) out of those
        queued. Never raises for network or server trouble (the summary says what
        happened); only a failure of the kit's own database propagates."""
        run = _Run(
            deadline=time.monotonic() + self.config.total_time,
            stop=stop or threading.Event(),
            progress=progress,
            on_retry=on_retry,
        )
        summary = run.summary
        with relay_lock(self._lock_path, wait=self.config.lock_wait, stop=run.stop) as held:
            if not held:
                summary.busy = True
                summary.last_error = "another sync of this kit's outbox is running"
                self._totals(summary)
                return summary
            failure: Failure | None = None
            try:
                run.total = self.outbox.count_unsent()
                run.report()
                self._settle_sent(run)
                self._drain(run)
            except RequestFailed as exc:
                failure = exc.failure
            except Stopped:
                summary.stopped = True
            if run.stop.is_set():
                summary.stopped = True
            self._finish(run, failure)
        return summary

    def _check(self, run: _Run) -> None:
        if run.stop.is_set() or time.monotonic() >= run.deadline:
            raise Stopped

    def _settle_sent(self, run: _Run) -> None:
        """Rows a previous run left ``sent`` (it was killed or timed out): ask the server."""
        after = 0
        while True:
            self._check(run)
            rows = self.outbox.rows("sent", after=after, limit=p.MAX_HAVE)
            if not rows:
                return
            items = [_item(r)[0] for r in rows]
            after = items[-1].row_id
            self._unsend(self._ask_have(run, items))

    def _drain(self, run: _Run) -> None:
        after = 0
        while True:
            self._check(run)
            rows = self.outbox.rows("pending", after=after, limit=self.config.batch_size)
            if not rows:
                return
            batch: list[_Item] = []
            unreadable: list[tuple[_Item, str]] = []
            size = 0
            for row in rows:
                item, payload = _item(row)
                if batch and size + len(payload) > self.config.max_batch_bytes:
                    break  # the rest goes in the next batch
                size += len(payload)
                after = item.row_id
                problem = _load_envelope(item, payload)
                if problem:
                    unreadable.append((item, problem))
                else:
                    batch.append(item)
            if unreadable:
                with self._write() as conn, conn.begin():
                    for item, problem in unreadable:
                        self._set_aside(conn, run, item, problem, conflict=False)
            run.total = max(run.total, run.done + len(batch))
            if batch:
                self._mark_sent(batch)
                self._deliver(run, batch)
            run.report()

    def _mark_sent(self, batch: list[_Item]) -> None:
        self.outbox.mark_sent([item.row_id for item in batch], now=self.clock())

    def _deliver(self, run: _Run, batch: list[_Item]) -> None:
        """Send a batch until every record has its answer; split it around a record the
        server cannot take."""
        left = {item.record_id: item for item in batch}
        ambiguous = False  # True once a failed request may have reached the server
        try:
            for attempt in self._retrying(run):
                with attempt:
                    self._check(run)
                    if ambiguous:
                        rest = self._have_only(run, list(left.values()))
                        left = {item.record_id: item for item in rest}
                        if not left:
                            return
                    request = p.IngestRequest(
                        kit_id=self.credentials.kit_id,
                        records=[i.envelope for i in left.values() if i.envelope is not None],
                    )
                    was_ambiguous, ambiguous = ambiguous, True
                    try:
                        response = self._post(run, "/ingest", request.model_dump_json().encode())
                    except RequestFailed as exc:
                        if exc.failure.maybe_delivered:
                            run.sent_ids.update(left)
                        else:
                            ambiguous = was_ambiguous
                        raise
                    run.sent_ids.update(left)
                    self._apply_results(run, left, response)
        except RequestFailed as exc:
            if exc.failure.kind == "record":
                self._split(run, list(left.values()), exc.failure)
                return
            if not ambiguous:
                self._unsend(list(left.values()))
            raise
        except Stopped:
            if not ambiguous:
                self._unsend(list(left.values()))
            raise

    def _split(self, run: _Run, items: list[_Item], failure: Failure) -> None:
        if len(items) == 1:
            with self._write() as conn, conn.begin():
                self._set_aside(conn, run, items[0], failure.reason, conflict=False)
            return
        middle = len(items) // 2
        self._deliver(run, items[:middle])
        self._deliver(run, items[middle:])

    def _unsend(self, items: list[_Item]) -> None:
        """Rows that surely never reached the server go back to the queue as they were."""
        self.outbox.unsend([item.row_id for item in items])

    def _apply_results(
        self, run: _Run, left: dict[str, _Item], response: requests.Response
    ) -> None:
        try:
            results = p.IngestResponse.model_validate_json(response.content).results
        except ValidationError as exc:
            raise RequestFailed(
                Failure(
                    "permanent",
                    "the server answered in a form this kit does not understand; "
                    f"update popup-kit ({exc.error_count()} problems)",
                )
            ) from exc
        key = self.credentials.receipt_key
        good: list[tuple[_Item, p.Receipt, bool]] = []
        with self._write() as conn, conn.begin():
            for result in results:
                item = left.pop(result.record_id, None)
                if item is None:
                    continue
                if result.status in ("accepted", "already_received"):
                    receipt = result.receipt
                    if receipt is not None and p.verify_receipt(
                        receipt, key, record_id=item.record_id, content_hash=item.content_hash
                    ):
                        good.append((item, receipt, result.status != "accepted"))
                    else:
                        self._unverified(conn, run, item)
                elif result.status == "conflict":
                    self._set_aside(conn, run, item, result.reason, conflict=True)
                else:
                    self._set_aside(conn, run, item, result.reason, conflict=False)
            self._confirm(conn, run, good)
        if left:
            # The server gave no answer for these: they stay 'sent', settled with /have.
            log.warning("sync: the server gave no result for %d records", len(left))
            run.note(Failure("transient", "the server did not answer for every record"))
            left.clear()

    def _ask_have(self, run: _Run, items: list[_Item]) -> list[_Item]:
        """Confirm the items the server already holds (with retries); return the rest."""
        for attempt in self._retrying(run):
            with attempt:
                self._check(run)
                return self._have_only(run, items)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity re-raises

    def _have_only(self, run: _Run, items: list[_Item]) -> list[_Item]:
        """One ``/have`` request; confirms what the server holds, returns the rest."""
        by_id = {item.record_id: item for item in items}
        body = p.HaveRequest(record_ids=list(by_id)).model_dump_json().encode()
        response = self._post(run, "/have", body)
        try:
            held = p.HaveResponse.model_validate_json(response.content).have
        except ValidationError as exc:
            raise RequestFailed(
                Failure(
                    "permanent",
                    "the server answered in a form this kit does not understand; update popup-kit",
                )
            ) from exc
        key = self.credentials.receipt_key
        good: list[tuple[_Item, p.Receipt, bool]] = []
        for entry in held:
            item = by_id.get(entry.record_id)
            # Different content under this id is left to ingest, which records the conflict.
            if item is None or entry.content_hash != item.content_hash:
                continue
            if p.verify_receipt(
                entry.receipt, key, record_id=item.record_id, content_hash=item.content_hash
            ):
                good.append((item, entry.receipt, True))
                by_id.pop(item.record_id)
        if good:
            with self._write() as conn, conn.begin():
                self._confirm(conn, run, good)
        return list(by_id.values())

    # --- row state changes (inside the caller's transaction) ------------------------

    def _write(self) -> Connection:
        return self.outbox.writing()

    def _confirm(
        self, conn: Connection, run: _Run, confirmed: list[tuple[_Item, p.Receipt, bool]]
    ) -> None:
        """Rows whose receipt verified become confirmed, the receipt kept with them."""
        if not confirmed:
            return
        self.outbox.confirm(
            conn,
            [(item.row_id, receipt.model_dump_json()) for item, receipt, _ in confirmed],
            now=self.clock(),
        )
        # The relay lock makes this run the only one moving these rows.
        run.summary.confirmed += len(confirmed)
        run.summary.already_there += sum(already for _item, _receipt, already in confirmed)
        run.done += len(confirmed)

    def _unverified(self, conn: Connection, run: _Run, item: _Item) -> None:
        reason = (
            "the server's receipt did not verify with this kit's receipt key; the record "
            "stays unsent: ask the coordinator (the kit may need enrolling again)"
        )
        self.outbox.back_to_pending(conn, item.row_id, reason)
        run.note(Failure("permanent", reason))

    def _set_aside(
        self, conn: Connection, run: _Run, item: _Item, reason: str, *, conflict: bool
    ) -> None:
        words = f"conflict: {reason}" if conflict else reason
        if self.outbox.set_aside(conn, item.row_id, words):
            entry = SetAside(item.record_id, item.record_type, item.visit_id, reason)
            (run.summary.conflicts if conflict else run.summary.set_aside).append(entry)
            run.done += 1

    def _finish(self, run: _Run, failure: Failure | None) -> None:
        summary = run.summary
        summary.sent = len(run.sent_ids)
        if failure is None:
            failure = run.last_failure
        if failure is None and summary.stopped:
            words = (
                "the sync was stopped before the outbox was empty"
                if run.stop.is_set()
                else f"the sync ran out of time ({self.config.total_time:g} s) before the "
                "outbox was empty"
            )
            failure = Failure("transient", words)
        now = self.clock()
        unsent = self.outbox.count_unsent()
        if unsent and failure is not None:
            wait = max(failure.retry_after or 0.0, self.config.retry_interval)
            summary.last_error = failure.reason
            summary.next_attempt_at = now + timedelta(seconds=wait)
            self.outbox.note_failure(failure.reason, next_attempt_at=summary.next_attempt_at)
        elif failure is not None and failure.kind == "permanent":
            summary.last_error = failure.reason
        self._totals(summary)
        run.total = max(run.total, run.done)
        run.report()

    def _totals(self, summary: SyncSummary) -> None:
        summary.still_unsent, summary.set_aside_total = self.outbox.totals()


@dataclass
class _Run:
    deadline: float
    stop: threading.Event
    progress: Progress | None
    on_retry: Callable[[RetryNotice], None] | None
    summary: SyncSummary = field(default_factory=SyncSummary)
    total: int = 0
    done: int = 0
    sent_ids: set[str] = field(default_factory=set)
    last_failure: Failure | None = None

    def note(self, failure: Failure) -> None:
        self.last_failure = failure

    def pause(self, seconds: float) -> None:
        # Waiting on the stop event: a stop request ends the wait at once.
        self.stop.wait(seconds)

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))


def _load_envelope(item: _Item, payload: str) -> str:
    """Fill ``item.envelope`` from the stored payload; the reason it cannot be sent, if any."""
    try:
        record = json.loads(payload)
        if not isinstance(record, dict):
            return "the queued payload is not a record"
        envelope = p.Envelope.from_record(record)
    except (ValueError, TypeError) as exc:
        problems = exc.errors() if isinstance(exc, ValidationError) else None
        if problems:
            where = ".".join(str(part) for part in problems[0].get("loc", ()))
            return f"the queued record is malformed ({where}: {problems[0].get('msg')})"
        return f"the queued record is unreadable ({short(exc)})"
    if envelope.content_hash != item.content_hash:
        return "the queued record changed after it was queued (content hash differs)"
    item.envelope = envelope
    return ""


def sync_outbox(
    engine: Engine,
    credentials: p.KitCredentials,
    config: SyncConfig | None = None,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_retry: Callable[[RetryNotice], None] | None = None,
    clock: Clock = utc_now,
) -> SyncSummary:
    """One sync run (see :meth:`SyncClient.run`)."""
    client = SyncClient(engine, credentials, config, clock=clock)
    try:
        return client.run(progress=progress, stop=stop, on_retry=on_retry)
    finally:
        client.close()
