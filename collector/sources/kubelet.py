"""The kubelet source: reads its own node's kubelet (``/stats/summary`` and ``/pods``) once per scrape.

It speaks HTTPS to port 10250 with the pod's service-account token (re-read when the projected token
rotates) and verifies the kubelet's certificate against a CA, or, when told to, skips verification and says so
loudly once; or plain HTTP to the read-only port. Optionally it also reads the Node object from the API server
for capacity and allocatable, refreshed every few minutes. A failed read is counted per cause and raised as
``SourceError`` carrying its likely cause, so the agent skips the scrape, logs it once per episode and simply
tries again at the next tick.

Usage::

    source = KubeletSource.from_settings(get_settings())   # https://$NODE_IP:10250 unless configured
    scrape = source.collect()   # Scrape(containers=[...], pods=[...], node=NodeSample(...))
    source.close()
"""

from __future__ import annotations

import enum
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning, ReadTimeoutError

from collector.errors import SourceAuthError, SourceError
from collector.settings import SERVICE_ACCOUNT_DIR
from collector.sources import Scrape, SourceName
from collector.sources.kubelet_models import Node
from collector.sources.kubelet_parse import (
    NodeMismatchError,
    build_scrape,
    parse_node,
    parse_pods,
    parse_summary,
)

if TYPE_CHECKING:
    from collector.settings import CollectorSettings

log = logging.getLogger(__name__)

SUMMARY_PATH = "/stats/summary"
PODS_PATH = "/pods"
KUBELET_HTTPS_PORT = 10250
MAX_BODY_BYTES = 64 * 2**20
"""A summary of a full node (110 pods) is about 1 MiB; anything this large is not a kubelet answering."""
_CHUNK_BYTES = 64 * 1024
_HTTP_UNAUTHORIZED = 401
_HTTP_FORBIDDEN = 403


class Cause(enum.StrEnum):
    """Why a scrape failed; each has its own counter in ``KubeletFailures``."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    TLS = "tls"
    CONNECTION = "connection"
    TRUNCATED = "truncated"
    BAD_PAYLOAD = "bad_payload"
    WRONG_NODE = "wrong_node"


@dataclass(slots=True)
class KubeletFailures:
    """Failed reads by cause since start (cumulative counts)."""

    unauthorized: int = 0
    forbidden: int = 0
    http_error: int = 0
    timeout: int = 0
    tls: int = 0
    connection: int = 0
    truncated: int = 0
    bad_payload: int = 0
    wrong_node: int = 0
    node_object: int = 0
    """Failed reads of the Node object (not fatal: the scrape goes on without capacity)."""

    def add(self, cause: Cause) -> None:
        """Count one failure of ``cause``."""
        setattr(self, cause.value, getattr(self, cause.value) + 1)


class _BodyTooLargeError(ValueError):
    pass


# --- I/O ---------------------------------------------------------------------------------------------------


def fetch_summary(
    session: requests.Session, base_url: str, *, timeout_seconds: float = 10.0, token: str | None = None
) -> bytes:
    """The raw body of ``GET {base_url}/stats/summary``, read completely within ``timeout_seconds`` (s)."""
    return fetch(session, base_url.rstrip("/") + SUMMARY_PATH, timeout_seconds=timeout_seconds, token=token)


def fetch_pods(
    session: requests.Session, base_url: str, *, timeout_seconds: float = 10.0, token: str | None = None
) -> bytes:
    """The raw body of ``GET {base_url}/pods``, read completely within ``timeout_seconds`` (s)."""
    return fetch(session, base_url.rstrip("/") + PODS_PATH, timeout_seconds=timeout_seconds, token=token)


def fetch(
    session: requests.Session,
    url: str,
    *,
    timeout_seconds: float,
    token: str | None = None,
    verify: bool | str | None = None,
) -> bytes:
    """The raw body of ``GET url`` within ``timeout_seconds`` (s) in all; raises ``requests`` errors.

    ``requests``' own timeout bounds each socket read, not the whole answer: a kubelet trickling its body
    would hold the scrape forever, so the total is checked here too.
    """
    deadline = time.monotonic() + timeout_seconds
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    chunks: list[bytes] = []
    size = 0
    with session.get(url, headers=headers, timeout=timeout_seconds, stream=True, verify=verify) as response:
        response.raise_for_status()
        try:
            for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _BodyTooLargeError(f"body larger than {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise requests.ReadTimeout(f"no complete answer within {timeout_seconds:g}s")
        except requests.ConnectionError as exc:
            # requests reports a read timeout in the middle of a body as a connection error.
            if exc.args and isinstance(exc.args[0], ReadTimeoutError):
                raise requests.ReadTimeout(str(exc.args[0])) from exc
            raise
    return b"".join(chunks)


def kubelet_base_url(configured: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The kubelet's base URL: ``configured``, else ``https://$NODE_IP:10250``; ``SourceError`` if neither."""
    if configured:
        scheme = urlsplit(configured).scheme
        if scheme not in ("http", "https"):
            raise SourceError(
                f"kubelet: KPULSE_COLLECTOR_KUBELET_URL must be http(s)://..., got {configured!r}"
            )
        return configured.rstrip("/")
    node_ip = environ.get("NODE_IP", "").strip()
    if not node_ip:
        raise SourceError(
            "kubelet: KPULSE_COLLECTOR_KUBELET_URL is unset and so is NODE_IP; give the DaemonSet "
            "NODE_IP from the downward API (fieldRef status.hostIP) or set the URL"
        )
    return f"https://{_url_host(node_ip)}:{KUBELET_HTTPS_PORT}"


def in_cluster_node_url(node_name: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The API server URL of Node ``node_name`` in this cluster, ``None`` outside a cluster."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    if not host:
        return None
    port = environ.get("KUBERNETES_SERVICE_PORT", "443").strip() or "443"
    return f"https://{_url_host(host)}:{port}/api/v1/nodes/{node_name}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class TokenFile:
    """A bearer token kept in a file that may be replaced at any time (projected tokens rotate hourly)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._token: str | None = None
        self._warned_missing = False

    def read(self) -> str | None:
        """The current token, re-read only when the file changed; ``None`` (warned once) while missing."""
        try:
            # The kubelet swaps projected volumes by renaming a symlink, so the inode changes with the token.
            stat = self.path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key != self._key:
                self._token = self.path.read_text(encoding="utf-8").strip() or None
                self._key = key
        except OSError as exc:
            if not self._warned_missing:
                self._warned_missing = True
                log.warning("kubelet: cannot read the token file %s (%s); sending no token", self.path, exc)
            self._key, self._token = None, None
            return None
        self._warned_missing = False
        return self._token


# --- the source --------------------------------------------------------------------------------------------


class KubeletSource:
    """Reads one node's kubelet; ``collect()`` is called by one thread at a time."""

    name: SourceName = "kubelet"

    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str,
        node_name: str,
        token_file: Path | None = SERVICE_ACCOUNT_DIR / "token",
        ca_file: Path | None = None,
        insecure_skip_verify: bool = False,
        timeout_seconds: float = 8.0,
        node_object_url: str | None = None,
        node_object_ca_file: Path | None = None,
        node_object_refresh_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Read the kubelet at ``base_url`` (``https://host:10250`` or ``http://host:10255``).

        The session is configured for the kubelet (certificate verification, no proxies from the
        environment): hand the source its own. ``ca_file`` is the CA that signed the kubelet's serving
        certificate (default: the service account's cluster CA when present, else the system's).
        ``node_object_url`` (the API server's ``/api/v1/nodes/<name>``) adds capacity and allocatable,
        verified with ``node_object_ca_file`` (default: the service account's CA); it is re-read every
        ``node_object_refresh_seconds``. ``timeout_seconds`` is the whole scrape's deadline.
        """
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._node_name = node_name
        self._https = urlsplit(self._base_url).scheme == "https"
        self._token_file = TokenFile(token_file) if token_file is not None else None
        self._timeout_seconds = timeout_seconds
        self._monotonic = monotonic
        self._wall_clock_ns = wall_clock_ns

        # The kubelet is on this node: proxies and CA bundles from the environment are meant for elsewhere.
        session.trust_env = False
        session.verify = self._kubelet_verify(ca_file, insecure_skip_verify)

        self._node_object_url = node_object_url
        self._node_object_verify = _ca_or_default(node_object_ca_file, "node_object_ca_file")
        self._node_object_refresh_seconds = node_object_refresh_seconds
        self._node_object: Node | None = None
        self._node_object_read_at: float | None = None
        self._node_object_failing = False

        self.failures = KubeletFailures()
        """Failed reads by cause (cumulative)."""
        self.scrapes = 0
        """Successful scrapes (cumulative)."""

    @classmethod
    def from_settings(
        cls,
        settings: CollectorSettings,
        session: requests.Session | None = None,
        *,
        environ: Mapping[str, str] = os.environ,
    ) -> KubeletSource:
        """A source for the kubelet the settings name; ``SourceError`` naming the variable if they cannot."""
        return cls(
            session if session is not None else requests.Session(),
            base_url=kubelet_base_url(settings.kubelet_url, environ),
            node_name=settings.node_name,
            token_file=settings.kubelet_token_file,
            ca_file=settings.kubelet_ca_file,
            insecure_skip_verify=settings.kubelet_insecure_skip_verify,
            timeout_seconds=settings.effective_scrape_timeout_seconds,
            node_object_url=in_cluster_node_url(settings.node_name, environ),
        )

    def collect(self) -> Scrape:
        """Read the kubelet once; raises ``SourceError`` (``SourceAuthError`` for 401/403) when it cannot."""
        scraped_at_ns = self._wall_clock_ns()
        deadline = self._monotonic() + self._timeout_seconds
        token = self._token_file.read() if self._https and self._token_file is not None else None
        path = SUMMARY_PATH
        try:
            summary = parse_summary(
                fetch_summary(
                    self._session, self._base_url, timeout_seconds=self._remaining(deadline), token=token
                ),
                node=self._node_name,
            )
            path = PODS_PATH
            pods = parse_pods(
                fetch_pods(
                    self._session, self._base_url, timeout_seconds=self._remaining(deadline), token=token
                )
            )
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors, as is an unreadable CA file
            raise self._failed(path, exc, token_sent=token is not None) from exc
        scrape = build_scrape(
            summary, pods, node_object=self._read_node_object(deadline), scraped_at_ns=scraped_at_ns
        )
        self.scrapes += 1
        return scrape

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    # --- internals ----------------------------------------------------------------------------------------

    def _kubelet_verify(self, ca_file: Path | None, insecure: bool) -> bool | str:
        if not self._https:
            return True
        if insecure:
            log.warning(
                "kubelet: TLS verification of %s is OFF (KPULSE_COLLECTOR_KUBELET_INSECURE_SKIP_VERIFY): "
                "anyone able to intercept this connection can impersonate the kubelet and capture the "
                "service-account token; set KPULSE_COLLECTOR_KUBELET_CA_FILE instead where possible",
                self._base_url,
            )
            # Said once above; urllib3 would repeat it on every request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            return False
        return _ca_or_default(ca_file, "KPULSE_COLLECTOR_KUBELET_CA_FILE")

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise requests.ReadTimeout(f"the scrape's {self._timeout_seconds:g}s deadline passed")
        return remaining

    def _failed(self, path: str, exc: Exception, *, token_sent: bool) -> SourceError:
        # Counted, not logged: the agent logs the episode, once.
        cause, message = self._describe(path, exc, token_sent=token_sent)
        self.failures.add(cause)
        error = SourceAuthError if cause in (Cause.UNAUTHORIZED, Cause.FORBIDDEN) else SourceError
        return error(message, cause=cause.value)

    def _describe(self, path: str, exc: Exception, *, token_sent: bool) -> tuple[Cause, str]:
        url = self._base_url + path
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == _HTTP_UNAUTHORIZED:
                token = (
                    f"the bearer token from {self._token_file.path} was rejected (expired, or not a token "
                    "this cluster's API server accepts)"
                    if token_sent and self._token_file is not None
                    else "no bearer token was sent (is the service-account token mounted? "
                    "KPULSE_COLLECTOR_KUBELET_TOKEN_FILE)"
                )
                return Cause.UNAUTHORIZED, f"kubelet: 401 Unauthorized from {url}: {token}"
            if status == _HTTP_FORBIDDEN:
                return Cause.FORBIDDEN, f"kubelet: 403 Forbidden from {url}: {_rbac_hint(path)}"
            hint = (
                "a kubelet-side error: see its log"
                if status >= 500
                else "is KPULSE_COLLECTOR_KUBELET_URL a kubelet's base URL?"
            )
            return Cause.HTTP_ERROR, f"kubelet: HTTP {status} from {url} ({hint})"
        if isinstance(exc, requests.exceptions.SSLError):
            return Cause.TLS, (
                f"kubelet: TLS handshake with {url} failed ({_reason(exc)}): set "
                "KPULSE_COLLECTOR_KUBELET_CA_FILE to the CA that signed the kubelet's serving certificate, "
                "or KPULSE_COLLECTOR_KUBELET_INSECURE_SKIP_VERIFY=true for self-signed kubelet certificates; "
                "or the port speaks plain HTTP (the read-only port wants http://)"
            )
        if isinstance(exc, requests.Timeout):
            return Cause.TIMEOUT, (
                f"kubelet: no answer from {url} within the {self._timeout_seconds:g}s scrape deadline "
                f"({_reason(exc)}): the kubelet is overloaded, or a firewall drops traffic to its port"
            )
        if isinstance(
            exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
        ):
            return Cause.TRUNCATED, (
                f"kubelet: the answer from {url} was cut off ({_reason(exc)}): the kubelet or a proxy "
                "closed the connection mid-body"
            )
        if isinstance(exc, requests.ConnectionError):
            return Cause.CONNECTION, (
                f"kubelet: cannot connect to {url} ({_reason(exc)}): check KPULSE_COLLECTOR_KUBELET_URL or "
                "NODE_IP, and the port (10250 for HTTPS; the read-only 10255 is often disabled)"
            )
        if isinstance(exc, NodeMismatchError):
            return Cause.WRONG_NODE, (
                f"kubelet: {url} belongs to another node: {exc}; set KPULSE_COLLECTOR_NODE_NAME from the "
                "downward API (fieldRef spec.nodeName) and point the URL at this node's kubelet"
            )
        if isinstance(exc, ValueError):
            return Cause.BAD_PAYLOAD, (
                f"kubelet: the answer from {url} is not a valid {path} document ({_short(exc)}): truncated "
                "or garbled, or not a kubelet answering on that port"
            )
        return Cause.CONNECTION, f"kubelet: request to {url} failed: {_reason(exc)}"

    def _read_node_object(self, deadline: float) -> Node | None:
        # Capacity changes rarely and every node asking the API server every scrape would load it for nothing:
        # keep the last good answer and refresh it every few minutes. A failure never fails the scrape.
        if self._node_object_url is None:
            return None
        now = self._monotonic()
        if self._node_object_read_at is not None and now - self._node_object_read_at < (
            self._node_object_refresh_seconds
        ):
            return self._node_object
        remaining = deadline - now
        if remaining <= 0:
            return self._node_object
        self._node_object_read_at = now
        token = self._token_file.read() if self._token_file is not None else None
        try:
            body = fetch(
                self._session,
                self._node_object_url,
                timeout_seconds=remaining,
                token=token,
                verify=self._node_object_verify,
            )
            node = parse_node(body, node=self._node_name)
            if node is None:
                raise ValueError(f"the answer holds no Node named {self._node_name!r}")
        except (OSError, ValueError) as exc:
            self.failures.node_object += 1
            if not self._node_object_failing:
                self._node_object_failing = True
                hint = (
                    "the service account needs RBAC get on nodes"
                    if isinstance(exc, requests.HTTPError)
                    and exc.response is not None
                    and exc.response.status_code == _HTTP_FORBIDDEN
                    else "check the API server's reachability"
                )
                log.warning(
                    "kubelet: cannot read the Node object at %s (%s): %s; node capacity and allocatable "
                    "stay unknown until it can be read",
                    self._node_object_url,
                    _short(exc),
                    hint,
                )
            return self._node_object
        if self._node_object_failing:
            log.info("kubelet: the Node object at %s is readable again", self._node_object_url)
            self._node_object_failing = False
        self._node_object = node
        return node


def _ca_or_default(ca_file: Path | None, variable: str) -> bool | str:
    if ca_file is not None:
        if not ca_file.is_file():
            raise SourceError(f"kubelet: {variable}={ca_file} does not exist or is not a file")
        return str(ca_file)
    cluster_ca = SERVICE_ACCOUNT_DIR / "ca.crt"
    return str(cluster_ca) if cluster_ca.is_file() else True


def _rbac_hint(path: str) -> str:
    if path == SUMMARY_PATH:
        return "the service account needs RBAC get on nodes/stats"
    return (
        "the service account needs RBAC get on nodes/proxy (or nodes/pods where the kubelet authorizes "
        "its endpoints fine-grained, KubeletFineGrainedAuthz)"
    )


def _reason(exc: BaseException) -> str:
    # requests nests the urllib3 error that says what happened (refused, handshake failure) a few levels
    # down, as an argument or as a ``reason``; the innermost message is the useful one.
    inner = exc
    for _ in range(8):
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException):
            nested = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        if nested is None:
            break
        inner = nested
    return _short(inner)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
