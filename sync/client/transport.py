"""Transport: one HTTP request to the server, and the one place that decides what its
failure means (:func:`classify`).

Transient failures (connection errors, timeouts, 5xx, 429, an answer that is not the
server's, such as a Wi-Fi login page) are retried by the run; permanent ones (TLS, revoked
or unknown credentials, other refusals) end it; a record the server cannot take (413/422)
is isolated by the run.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

from sync import protocol as p
from sync.client.config import SyncConfig, utc_now

if TYPE_CHECKING:
    import requests

log = logging.getLogger("sync.client")

FailureKind = Literal["transient", "permanent", "record"]
_plain_servers: set[str] = set()
"""Servers (API base URLs) that refused a gzip body in this process: sent plain since."""
_plain_lock = threading.Lock()


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


class Stopped(Exception):
    """The caller asked the run to stop, or its time is up."""


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
                f"the secure connection to the server failed ({short(error)}); check the "
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
                f"the server address cannot be used ({short(error)}); check the kit's settings",
                maybe_delivered=False,
            )
        raise error
    if response is None:
        raise ValueError("classify needs an error or a response")

    status = response.status_code
    marked = p.is_protocol_response(status, response.headers, response.content)
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
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


def is_timeout(error: BaseException) -> bool:
    import requests
    from urllib3.exceptions import ReadTimeoutError

    inner = error.args[0] if error.args else None
    return isinstance(error, requests.Timeout) or isinstance(inner, ReadTimeoutError)


def short(error: BaseException) -> str:
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


def retry_after_seconds(value: str | None) -> float | None:
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


class Transport:
    """POSTs to one server's API with the kit's credential; one session per thread."""

    def __init__(self, credentials: p.KitCredentials, config: SyncConfig) -> None:
        self.credentials = credentials
        self.config = config
        self._local = threading.local()
        self.base = credentials.server_url.rstrip("/") + p.API_PREFIX

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

    def post(self, path: str, body: bytes, *, deadline: float) -> requests.Response:
        """One request, ending by ``deadline`` (``time.monotonic``); raises
        :class:`RequestFailed` unless the server answered 2xx, :class:`Stopped` when the
        deadline has passed.

        The body goes gzip-compressed unless the server is known to refuse that. A server
        that refuses it (415; or 400, as servers before gzip did, when the same body sent
        plain is not refused too) gets this body again plain, and plain ones from then on.
        """
        with _plain_lock:
            plain = not self.config.compress or self.base in _plain_servers
        if not plain:
            response = self._send(path, gzip.compress(body, mtime=0), deadline, gzipped=True)
            if response.status_code not in (400, 415):
                return _checked(response)
            fallback = self._send(path, body, deadline, gzipped=False)
            if response.status_code == 415 or fallback.status_code != 400:
                log.warning("sync: the server does not take gzip bodies; sending them plain")
                with _plain_lock:
                    _plain_servers.add(self.base)
            return _checked(fallback)
        return _checked(self._send(path, body, deadline, gzipped=False))

    def _send(self, path: str, data: bytes, deadline: float, *, gzipped: bool) -> requests.Response:
        import requests

        left = deadline - time.monotonic()
        if left <= 0:
            raise Stopped
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
                self.base + path,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = classify(error=exc)
            assert failure is not None
            if cut_short and is_timeout(exc):
                # The run's own time bound ended this request, not the network: the run is
                # over, and the failure before it (if any) is the one worth reporting.
                raise Stopped from exc
            raise RequestFailed(failure) from exc


def _checked(response: requests.Response) -> requests.Response:
    failure = classify(response=response)
    if failure is not None:
        raise RequestFailed(failure)
    return response
