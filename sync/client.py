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

The module never imports the booth application; the caller passes the SQLAlchemy engine
of the kit's SQLite file (which holds the ``outbox`` table) and the kit's credentials.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, text

from sync import protocol as p
from sync.outbox import utc_iso

if TYPE_CHECKING:
    import requests
    from tenacity import RetryCallState

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_plain_servers: set[str] = set()
"""Servers (API base URLs) that refused a gzip body in this process: sent plain since."""
_plain_lock = threading.Lock()
Progress = Callable[[int, int], None]
FailureKind = Literal["transient", "permanent", "record"]
LOCK_SUFFIX = ".sync-lock"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- configuration and results -------------------------------------------------------


@dataclass(frozen=True)
class SyncConfig:
    """How hard and how long one sync run tries. Tests shorten the waits here."""

    batch_size: int = 200
    max_batch_bytes: int = 2_000_000
    """A batch closes at this many bytes of records (a single larger record goes alone)."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 6
    """Tries per request (first try included) before the run gives up for now."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    total_time: float = 300.0
    """The whole run, waits included, ends within this many seconds."""
    retry_interval: float = 60.0
    """After a failed run, the next try is due this long after it (or after Retry-After)."""
    lock_wait: float = 0.0
    """How long to wait for another relay of the same outbox to finish."""
    verify_tls: bool | str = True
    """``True``, ``False`` or the path of a CA bundle for the server's certificate."""
    compress: bool = True
    """Send bodies gzip-compressed and accept compressed answers (a kit on a slow link
    gains most); a server that refuses gzip gets plain bodies from then on."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= p.MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {p.MAX_BATCH}")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


@dataclass(frozen=True)
class Failure:
    """What went wrong with one request, in words, and what to do about it."""

    kind: FailureKind
    reason: str
    retry_after: float | None = None
    maybe_delivered: bool = True
    """False only when the request surely never reached the server (connect phase)."""

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


class RequestFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class _Stopped(Exception):
    """The caller asked the run to stop, or its time is up."""


@dataclass(frozen=True)
class RetryNotice:
    """Told to ``on_retry`` before each wait: the failure and how long until the next try."""

    attempt: int
    wait: float
    failure: Failure


@dataclass(frozen=True)
class SetAside:
    record_id: str
    record_type: str
    visit_id: str | None
    reason: str


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


# --- the one classification -----------------------------------------------------------


def classify(
    error: BaseException | None = None, response: requests.Response | None = None
) -> Failure | None:
    """What a request's outcome means. ``None``: a 2xx answer from the server itself.

    Give the exception the request raised, or the response it returned.
    """
    import requests
    from urllib3.exceptions import NewConnectionError, ReadTimeoutError

    if error is not None:
        if isinstance(error, requests.exceptions.SSLError):
            return Failure(
                "permanent",
                f"the secure connection to the server failed ({_short(error)}); check the "
                "server address and the kit's clock, or ask the coordinator",
                maybe_delivered=False,
            )
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return Failure(
                "transient",
                "the server could not be reached in time (no network?)",
                maybe_delivered=False,
            )
        inner = error.args[0] if error.args else None
        # requests reports a timeout while reading the body as a ConnectionError.
        if isinstance(error, requests.exceptions.ReadTimeout) or isinstance(
            inner, ReadTimeoutError
        ):
            return Failure("transient", "the server did not answer in time")
        if isinstance(error, requests.exceptions.ConnectionError):
            if isinstance(getattr(inner, "reason", None), NewConnectionError):
                return Failure(
                    "transient",
                    "could not connect to the server (no network, or the server is down)",
                    maybe_delivered=False,
                )
            return Failure("transient", "the connection dropped before the server answered")
        if isinstance(
            error,
            requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError,
        ):
            return Failure("transient", "the server's answer arrived damaged")
        if isinstance(error, requests.exceptions.RequestException):
            return Failure(
                "permanent",
                f"the server address cannot be used ({_short(error)}); check the kit's settings",
                maybe_delivered=False,
            )
        raise error
    if response is None:
        raise ValueError("classify needs an error or a response")

    status = response.status_code
    marked = p.is_protocol_response(status, response.headers, response.content)
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return Failure(
            "transient",
            "the server asked the kit to slow down (HTTP 429)",
            retry_after,
            maybe_delivered=False,
        )
    if status >= 500 or status == 408:
        detail = f": {_error_detail(response)}" if marked else ""
        return Failure(
            "transient", f"the server had a problem (HTTP {status}){detail}", retry_after
        )
    if not marked:
        where = response.headers.get("Location") if 300 <= status < 400 else None
        kind = response.headers.get("Content-Type", "unknown content").split(";")[0]
        return Failure(
            "transient",
            "the answer did not come from the triage server (HTTP "
            f"{status}, {kind}{', redirect to ' + where if where else ''}): probably a Wi-Fi "
            "login page (captive portal); open a web browser and accept the network's terms",
        )
    if 200 <= status < 300:
        return None
    detail = _error_detail(response)
    if status == 401:
        return Failure(
            "permanent",
            f"the server does not accept this kit's credential ({detail}); enrol the kit again",
            maybe_delivered=False,
        )
    if status == 403:
        return Failure("permanent", f"the server refused this kit: {detail}", maybe_delivered=False)
    if status in (413, 422):
        return Failure(
            "record",
            f"the server cannot take this record (HTTP {status}): {detail}",
            maybe_delivered=False,
        )
    return Failure("permanent", f"the server refused the request (HTTP {status}): {detail}")


def _is_timeout(error: BaseException) -> bool:
    import requests
    from urllib3.exceptions import ReadTimeoutError

    inner = error.args[0] if error.args else None
    return isinstance(error, requests.Timeout) or isinstance(inner, ReadTimeoutError)


def _short(error: BaseException) -> str:
    text_ = str(error)
    return text_ if len(text_) <= 160 else text_[:157] + "..."


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no detail"
    if not isinstance(body, dict):
        return "no detail"
    error, detail = str(body.get("error", "")), str(body.get("detail", ""))
    return f"{error}: {detail}" if error and detail else error or detail or "no detail"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utc_now()).total_seconds())


# --- the relay lock -------------------------------------------------------------------


def lock_path(engine: Engine) -> Path:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        raise ValueError("sync needs the kit's SQLite database file")
    path = Path(database)
    return path.with_name(path.name + LOCK_SUFFIX)


@contextmanager
def relay_lock(
    path: Path, *, wait: float = 0.0, stop: threading.Event | None = None
) -> Iterator[bool]:
    """Hold the outbox's relay lock; yields False when another relay holds it."""
    import fcntl

    pause = stop or threading.Event()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        acquired = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left > 0 and not pause.is_set():
                    # flock has no timed wait: look again shortly.
                    pause.wait(min(0.05, left))
                    continue
            break
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- outbox rows ----------------------------------------------------------------------


@dataclass
class _Item:
    row_id: int
    record_id: str
    record_type: str
    visit_id: str | None
    content_hash: str
    envelope: p.Envelope | None = None


_ROW_COLUMNS = "id, record_id, record_type, visit_id, content_hash, payload"


def _item(row: Any) -> tuple[_Item, str]:
    return _Item(int(row[0]), row[1], row[2], row[3], row[4]), row[5]


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
        self._lock_path = lock_path(engine)
        self._local = threading.local()
        self._base = credentials.server_url.rstrip("/") + p.API_PREFIX

    # --- HTTP ---------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            session.headers.update(self.credentials.headers())
            session.headers["User-Agent"] = f"popup-kit-sync/{p.PROTOCOL_VERSION}"
            session.verify = self.config.verify_tls
            self._local.session = session
        return session

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def _post(self, run: _Run, path: str, body: bytes) -> requests.Response:
        """One request; raises :class:`RequestFailed` unless the server answered 2xx.

        The body goes gzip-compressed unless the server is known to refuse that. A server
        that refuses it (415; or 400, as servers before gzip did, when the same body sent
        plain is not refused too) gets this body again plain, and plain ones from then on.
        """
        with _plain_lock:
            plain = not self.config.compress or self._base in _plain_servers
        if not plain:
            response = self._send(run, path, gzip.compress(body, mtime=0), gzipped=True)
            if response.status_code not in (400, 415):
                return self._checked(run, response)
            fallback = self._send(run, path, body, gzipped=False)
            if response.status_code == 415 or fallback.status_code != 400:
                log.warning("sync: the server does not take gzip bodies; sending them plain")
                with _plain_lock:
                    _plain_servers.add(self._base)
            return self._checked(run, fallback)
        return self._checked(run, self._send(run, path, body, gzipped=False))

    def _send(self, run: _Run, path: str, data: bytes, *, gzipped: bool) -> requests.Response:
        import requests

        left = run.deadline - time.monotonic()
        if left <= 0:
            raise _Stopped
        cfg = self.config
        cut_short = left < max(cfg.connect_timeout, cfg.read_timeout)
        timeout = (min(cfg.connect_timeout, left), min(cfg.read_timeout, left))
        headers = {"Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if not cfg.compress:
            headers["Accept-Encoding"] = "identity"
        try:
            return self._session().post(
                self._base + path,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = classify(error=exc)
            assert failure is not None
            if cut_short and _is_timeout(exc):
                # The run's own time bound ended this request, not the network: the run is
                # over, and the failure before it (if any) is the one worth reporting.
                raise _Stopped from exc
            raise RequestFailed(failure) from exc

    def _checked(self, run: _Run, response: requests.Response) -> requests.Response:
        failure = classify(response=response)
        if failure is not None:
            raise RequestFailed(failure)
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
                run.total = self._count_unsent()
                run.report()
                self._settle_sent(run)
                self._drain(run)
            except RequestFailed as exc:
                failure = exc.failure
            except _Stopped:
                summary.stopped = True
            if run.stop.is_set():
                summary.stopped = True
            self._finish(run, failure)
        return summary

    def _count_unsent(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sent')")
                ).scalar_one()
            )

    def _check(self, run: _Run) -> None:
        if run.stop.is_set() or time.monotonic() >= run.deadline:
            raise _Stopped

    def _settle_sent(self, run: _Run) -> None:
        """Rows a previous run left ``sent`` (it was killed or timed out): ask the server."""
        after = 0
        while True:
            self._check(run)
            with self.engine.connect() as conn:
                rows = conn.execute(
                    text(
                        f"SELECT {_ROW_COLUMNS} FROM outbox WHERE state = 'sent' AND id > :a "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"a": after, "n": p.MAX_HAVE},
                ).all()
            if not rows:
                return
            items = [_item(r)[0] for r in rows]
            after = items[-1].row_id
            self._unsend(self._ask_have(run, items))

    def _drain(self, run: _Run) -> None:
        after = 0
        while True:
            self._check(run)
            with self.engine.connect() as conn:
                rows = conn.execute(
                    text(
                        f"SELECT {_ROW_COLUMNS} FROM outbox WHERE state = 'pending' AND id > :a "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"a": after, "n": self.config.batch_size},
                ).all()
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
        now = utc_iso(self.clock())
        with self._write() as conn, conn.begin():
            conn.execute(
                text(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = :t "
                    "WHERE id = :i AND state = 'pending'"
                ),
                [{"t": now, "i": item.row_id} for item in batch],
            )

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
        except _Stopped:
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
        if not items:
            return
        with self._write() as conn, conn.begin():
            conn.execute(
                text("UPDATE outbox SET state = 'pending' WHERE id = :i AND state = 'sent'"),
                [{"i": item.row_id} for item in items],
            )

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
        return self.engine.connect().execution_options(sqlite_immediate=True)

    def _confirm(
        self, conn: Connection, run: _Run, confirmed: list[tuple[_Item, p.Receipt, bool]]
    ) -> None:
        """Rows whose receipt verified become confirmed, the receipt kept with them."""
        if not confirmed:
            return
        now = utc_iso(self.clock())
        conn.execute(
            text(
                "UPDATE outbox SET state = 'confirmed', confirmed_at = :t, receipt = :r, "
                "last_error = NULL, next_attempt_at = NULL "
                "WHERE id = :i AND state IN ('pending', 'sent')"
            ),
            [
                {"t": now, "r": receipt.model_dump_json(), "i": item.row_id}
                for item, receipt, _already in confirmed
            ],
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
        conn.execute(
            text(
                "UPDATE outbox SET state = 'pending', last_error = :e "
                "WHERE id = :i AND state IN ('pending', 'sent')"
            ),
            {"e": reason, "i": item.row_id},
        )
        run.note(Failure("permanent", reason))

    def _set_aside(
        self, conn: Connection, run: _Run, item: _Item, reason: str, *, conflict: bool
    ) -> None:
        words = f"conflict: {reason}" if conflict else reason
        done = conn.execute(
            text(
                "UPDATE outbox SET state = 'set_aside', last_error = :e, next_attempt_at = NULL "
                "WHERE id = :i AND state IN ('pending', 'sent')"
            ),
            {"e": words, "i": item.row_id},
        )
        if done.rowcount:
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
        unsent = self._count_unsent()
        if unsent and failure is not None:
            wait = max(failure.retry_after or 0.0, self.config.retry_interval)
            summary.last_error = failure.reason
            summary.next_attempt_at = now + timedelta(seconds=wait)
            with self._write() as conn, conn.begin():
                conn.execute(
                    text(
                        "UPDATE outbox SET last_error = :e, next_attempt_at = :n "
                        "WHERE state IN ('pending', 'sent')"
                    ),
                    {"e": failure.reason, "n": utc_iso(summary.next_attempt_at)},
                )
        elif failure is not None and failure.kind == "permanent":
            summary.last_error = failure.reason
        self._totals(summary)
        run.total = max(run.total, run.done)
        run.report()

    def _totals(self, summary: SyncSummary) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT state, COUNT(*) FROM outbox "
                    "WHERE state IN ('pending', 'sent', 'set_aside') GROUP BY state"
                )
            ).all()
        counts: dict[str, int] = {str(state): int(n) for state, n in rows}
        summary.still_unsent = counts.get("pending", 0) + counts.get("sent", 0)
        summary.set_aside_total = counts.get("set_aside", 0)


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
        return f"the queued record is unreadable ({_short(exc)})"
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


# --- honest status and what purge may rely on ------------------------------------------


@dataclass(frozen=True)
class OutboxStatus:
    """What the home screen and the report show about the outbox."""

    queued: int
    """Not yet confirmed by the server and not set aside (pending or awaiting an answer)."""
    awaiting_answer: int
    """Sent, but the server's answer never arrived: settled at the next sync."""
    set_aside: int
    confirmed: int
    oldest_unsent_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None
    last_confirmed_at: datetime | None

    def oldest_unsent_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_unsent_at is None else now - self.oldest_unsent_at

    @property
    def all_confirmed(self) -> bool:
        return self.queued == 0 and self.set_aside == 0


def outbox_status(engine: Engine) -> OutboxStatus:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT "
                "COALESCE(SUM(state IN ('pending', 'sent')), 0), "
                "COALESCE(SUM(state = 'sent'), 0), "
                "COALESCE(SUM(state = 'set_aside'), 0), "
                "COALESCE(SUM(state = 'confirmed'), 0), "
                "MIN(CASE WHEN state IN ('pending', 'sent') THEN created_at END), "
                "MIN(CASE WHEN state IN ('pending', 'sent') THEN next_attempt_at END), "
                "MAX(confirmed_at) "
                "FROM outbox"
            )
        ).one()
        last_error = conn.execute(
            text(
                "SELECT last_error FROM outbox WHERE state IN ('pending', 'sent') "
                "AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
            )
        ).scalar()
    return OutboxStatus(
        queued=int(row[0]),
        awaiting_answer=int(row[1]),
        set_aside=int(row[2]),
        confirmed=int(row[3]),
        oldest_unsent_at=_parse_time(row[4]),
        last_error=last_error,
        next_attempt_at=_parse_time(row[5]),
        last_confirmed_at=_parse_time(row[6]),
    )


def set_aside_records(engine: Engine) -> list[SetAside]:
    """Every set-aside row with its reason, oldest first (for the reconciliation report)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT record_id, record_type, visit_id, last_error FROM outbox "
                "WHERE state = 'set_aside' ORDER BY id"
            )
        ).all()
    return [SetAside(r[0], r[1], r[2], r[3] or "") for r in rows]


def requeue(conn: Connection, record_ids: Sequence[str]) -> int:
    """Put set-aside rows back in the queue (after the cause is fixed); on ``conn``'s
    open transaction. Returns how many moved."""
    moved = 0
    for record_id in record_ids:
        moved += conn.execute(
            text(
                "UPDATE outbox SET state = 'pending', last_error = NULL, next_attempt_at = NULL "
                "WHERE record_id = :r AND state = 'set_aside'"
            ),
            {"r": record_id},
        ).rowcount
    return moved


@dataclass(frozen=True)
class ConfirmedRecord:
    record_id: str
    record_type: str
    visit_id: str | None
    confirmed_at: datetime
    receipt: p.Receipt


def confirmed_records(
    engine: Engine, receipt_key: bytes, *, before: datetime
) -> list[ConfirmedRecord]:
    """Rows confirmed before ``before`` whose stored receipt verifies with ``receipt_key``
    (checked again here: only a verified receipt may let the kit purge)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT record_id, record_type, visit_id, confirmed_at, receipt, content_hash "
                "FROM outbox WHERE state = 'confirmed' AND confirmed_at < :b ORDER BY id"
            ),
            {"b": utc_iso(before)},
        ).all()
    out: list[ConfirmedRecord] = []
    for record_id, record_type, visit_id, confirmed_at, receipt_text, chash in rows:
        try:
            receipt = p.Receipt.model_validate_json(receipt_text or "")
        except ValidationError:
            continue
        if not p.verify_receipt(receipt, receipt_key, record_id=record_id, content_hash=chash):
            continue
        when = _parse_time(confirmed_at)
        if when is not None:
            out.append(ConfirmedRecord(record_id, record_type, visit_id, when, receipt))
    return out


def confirmed_visits(engine: Engine, receipt_key: bytes, *, before: datetime) -> list[str]:
    """Visits whose every outbox row is confirmed, with a verified receipt, before ``before``."""
    good = {r.record_id for r in confirmed_records(engine, receipt_key, before=before)}
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT visit_id, record_id FROM outbox WHERE visit_id IS NOT NULL ORDER BY id")
        ).all()
    verdict: dict[str, bool] = {}
    for visit_id, record_id in rows:
        verdict[visit_id] = verdict.get(visit_id, True) and record_id in good
    return [visit_id for visit_id, ok in verdict.items() if ok]


def clear_confirmed_payloads(conn: Connection, record_ids: Sequence[str]) -> int:
    """Drop the payload (which may hold contact details) of confirmed rows, keeping their
    hash and receipt; on ``conn``'s open transaction, alongside the kit's own purge."""
    cleared = 0
    for record_id in record_ids:
        cleared += conn.execute(
            text("UPDATE outbox SET payload = '{}' WHERE record_id = :r AND state = 'confirmed'"),
            {"r": record_id},
        ).rowcount
    return cleared
