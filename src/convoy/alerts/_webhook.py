"""Webhook delivery of alert events: an HTTP POST of JSON, retried with exponential backoff.

Events are queued in the store in the same transaction as the alert they report
(:meth:`~convoy.stores.Store.alert_open`), so a crash loses none; the engine delivers them
(:class:`~convoy.alerts.BaselineAlerts` runs the delivery loop while the engine is open),
only to the webhooks it is configured with: an event queued for another URL waits for an
engine that has it (with its headers and settings).
Delivery is at least once: a receiver deduplicates on the ``Idempotency-Key`` header, a
random key per event kept in the store, so every attempt, by any engine, sends the same.
A failed attempt is logged at info on ``convoy.alerts``, an event given up as a warning.
A webhook's body leaves the system as a log line or a span does: its tenant, subject and
detail go through the interceptor's redactor (the store keeps them as they are).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from convoy._errors import UserError
from convoy._text import plural, quoted, short, unshowable
from convoy.observability._scrub import scrub
from convoy.stores._protocol import AlertDelivery, AlertRow, Store
from convoy.stores._rows import stored_json

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("convoy.alerts")


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """Where alert events are POSTed, and how hard to try.

    Args:
        url: an ``http://`` or ``https://`` URL.
        max_attempts: attempts before the event is given up (kept in the store, not
            deleted); the default 15, with the default backoff, keeps trying for about
            33 minutes, through a receiver's outage of half an hour.
        backoff: seconds before the second attempt; doubled for each further one (longer
            when the receiver's ``Retry-After`` says so).
        max_backoff: the longest wait between attempts, whatever ``Retry-After`` says.
        timeout: seconds one attempt may take.
        headers: extra request headers (an authorization token).
    """

    url: str
    max_attempts: int = 15
    backoff: float = 1.0
    max_backoff: float = 300.0
    timeout: float = 10.0
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        problem = url_problem(self.url)
        if problem is not None:
            raise UserError(problem)
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise UserError(f"Webhook.max_attempts must be a whole number >= 1, got "
                            f"{self.max_attempts!r}")
        for name in ("backoff", "max_backoff", "timeout"):
            value = getattr(self, name)
            lowest = 0 if name != "timeout" else math.ulp(0)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value) or value < lowest:
                raise UserError(f"Webhook.{name} must be a number of seconds "
                                f"{'> 0' if name == 'timeout' else '>= 0'}, got {value!r}")
        for header, value in (self.headers or {}).items():
            if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header) or \
                    not isinstance(value, str) or _HEADER_BREAK.search(value):
                raise UserError(f"Webhook header {quoted(str(header), 60)}: a header's name is "
                                "a token (letters, digits, '-'), its value ASCII text "
                                "without line breaks or control characters")

    def __repr__(self) -> str:
        # (no secret of the URL or the headers in a log line or a traceback)
        return (f"Webhook(url={shown_url(self.url)!r}, max_attempts={self.max_attempts}, "
                f"backoff={self.backoff}, max_backoff={self.max_backoff}, "
                f"timeout={self.timeout}, headers={'…' if self.headers else None})")

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts: the backoff, or as long as the
        last answer's ``Retry-After`` asked (``retry_after`` seconds), if longer, but never
        past ``max_backoff``."""
        # (the doubling stops where any backoff is past any cap: 2 ** 1024 is no float)
        wait = max(self.backoff * 2.0 ** min(max(0, attempts - 1), 256), retry_after or 0.0)
        return float(min(self.max_backoff, wait))


#: A header's name (RFC 9110 token) and what no header value may hold (a line break
#: would start another header: refused by every send).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_BREAK = re.compile(r"[^\t\x20-\x7e]")  # (and what is not ASCII: httpx sends
# header values as ASCII, and refused every send of one that is not)


def retry_after(value: str | None, now: float) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait from ``now`` (a wall-clock time):
    a number of seconds or an HTTP date; ``None`` when it says neither."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # (an HTTP date is GMT)
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def load_httpx() -> Any:
    """The ``httpx`` module, imported where webhooks are used (``import convoy`` stays
    light), or one clear error naming the extra that installs it."""
    try:
        import httpx
    except ImportError:
        raise UserError("alert webhooks need httpx: pip install 'convoy[alerts]'") from None
    return httpx


#: A URL's scheme and authority (``//user:password@host:port``), as far as it has them.
_HEAD = re.compile(r"(?:([A-Za-z][A-Za-z0-9+.-]*):)?(?://([^/?#]*))?")


def url_fingerprint(url: str) -> str:
    """A webhook URL's fingerprint: the first 8 hex digits of the SHA-256 of the URL as
    configured (``printf %s URL | sha256sum | cut -c1-8``). It tells apart two webhooks
    that differ only in a secret, and matches one to the configuration."""
    try:  # (the bytes of a URL read from a command line as the shell passed them)
        raw = url.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # (a lone surrogate of another kind: never a failure here)
        raw = url.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:8]


def shown_url(url: str) -> str:
    """A webhook URL as logs and ``convoy alerts`` show it: its scheme, host and port, then
    ``/…`` for whatever follows (Slack, Discord and Teams webhooks carry their secret in
    the path; others in the user, password or query string), and its
    :func:`url_fingerprint`: ``https://hooks.slack.com/… #3fa81c2e``."""
    m = _HEAD.match(url)
    assert m is not None  # (every part of the pattern is optional)
    scheme, netloc = m.group(1), m.group(2)
    if scheme and netloc is not None:
        hostport = netloc.rsplit("@", 1)[-1]
        if hostport.startswith("["):  # an IPv6 address
            host, bracket, port = hostport[1:].partition("]")
            host = f"[{host}]" if bracket else "…"
            port = port[1:] if port.startswith(":") else ""
        else:
            # (a ':' that is no port's: a password with an unescaped '/' after it)
            host, _, port = hostport.partition(":")
        head = f"{scheme}://{host}{f':{port}' if port.isdigit() else ''}"
        rest = url[m.end():]
    else:
        head, rest = "…", ""
    return f"{head}{'/…' if rest.strip('/') else ''} #{url_fingerprint(url)}"


def hide_url(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` in it :func:`shown_url` (an error may quote
    the URL), and any other part of it that may hold a secret (the path, the query, a long
    path segment, the user info) as ``…``."""
    text = text.replace(url, shown_url(url))
    m = _HEAD.match(url)
    assert m is not None
    rest, netloc = url[m.end():], m.group(2) or ""
    secrets = [rest.split("#", 1)[0], rest.split("?", 1)[0], *rest.split("?", 1)[1:],
               *(seg for seg in re.split(r"[/?&=#]", rest) if len(seg) >= 16),
               *netloc.rpartition("@")[:1]]
    for secret in sorted(secrets, key=len, reverse=True):
        if secret.strip("/") and len(secret) >= 4:
            text = text.replace(secret, "…")
    return text


def url_problem(url: str) -> str | None:
    """Why no request can be sent to the webhook ``url`` (one line naming it as
    :func:`shown_url` does: no user, password or query string), or ``None``."""
    if not isinstance(url, str):
        return f"Webhook url must be a string, got {type(url).__name__}"
    if not url.startswith(("http://", "https://")):
        # (the URL itself is not quoted: a webhook's path may hold its secret)
        head = re.match(r"[^/:?#@]*", url)
        shown = (f"one starting with {quoted(head.group(), 60)}" if head and head.group()
                 and head.group() != url else "one that does not")
        return f"Webhook url must start with http:// or https://, got {shown}"
    problem = _problem(url)
    return None if problem is None else f"Webhook url {quoted(shown_url(url), 200)}: {problem}"


def _problem(url: str) -> str | None:
    char = unshowable(url)
    if char is not None:
        return (f"it holds the character {char}, which a URL cannot; remove it or "
                "percent-encode it")
    try:
        parts = urlsplit(url)
    except ValueError as e:  # (a '[' with no ']', a bracketed host that is no address)
        return f"it cannot be read as a URL: {short(str(e), 100)}"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host; write it as http://HOST/PATH"
    try:
        import httpx
    except ImportError:  # (said when a delivery needs it)
        return None
    try:
        httpx.URL(url)
    except httpx.InvalidURL as e:  # (what else httpx cannot send a request to)
        return f"httpx cannot send to it: {_hidden(str(e), parts.password, parts.query)}"
    return None


def _hidden(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return short(text, 200)


def _failure(e: BaseException) -> str:
    """An attempt's error as it is recorded: ``ConnectError: ...``; the first error of a
    group (a connection's task group) for the group."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def alert_json(alert: AlertRow, redact: Callable[[str], str] | None = None
               ) -> dict[str, Any]:
    """An alert as JSON values (what a webhook receives, and ``convoy alerts --json``);
    ``redact``: what its tenant, subject and detail go through (a webhook's body)."""
    detail = stored_json(alert.detail or "{}", f"alert {alert.id}", "detail", or_text=True)
    tenant, subject = alert.tenant, alert.subject
    if redact is not None:
        tenant, subject, detail = redact(tenant), redact(subject), scrub(detail, redact)
    return {"id": alert.id, "tenant": tenant, "scope": alert.scope,
            "subject": subject, "metric": alert.metric, "status": alert.status,
            "value": alert.value, "mean": alert.mean, "deviation": alert.deviation,
            "threshold": alert.threshold, "opened": alert.opened, "cleared": alert.cleared,
            "cleared_value": alert.cleared_value, "detail": detail}


def as_of(d: AlertDelivery) -> AlertRow:
    """The alert of delivery ``d`` as it was when its event happened: a ``fired`` event
    retried after the alert cleared still says it is open (every attempt of one
    idempotency key sends one body). The store keeps the alert as it is now; clearing it
    sets only its status, ``cleared`` and ``cleared_value``."""
    if d.event == "fired" and d.alert.status != "open":
        return replace(d.alert, status="open", cleared=None, cleared_value=None)
    return d.alert


class _HiddenUrls(logging.Filter):
    """On httpx's logger: its own line for each request (``HTTP Request: POST URL ...``, at
    info) names a webhook's URL as :func:`shown_url` does, not with the secret a path or
    a query may hold. (httpx logs every request's whole URL; only webhooks' are hidden.)"""

    def __init__(self) -> None:
        super().__init__()
        #: Each URL, as configured and as httpx writes it, to what is shown of it.
        self.urls: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args, urls = record.args, self.urls
        if isinstance(args, tuple) and urls:
            record.args = tuple(urls.get(str(a), a) for a in args)
        return True


_HIDDEN = _HiddenUrls()


def hide_in_httpx_logs(urls: Iterable[str]) -> None:
    """Hide ``urls`` (webhooks') in httpx's log lines (see :class:`_HiddenUrls`)."""
    for url in urls:
        shown = _HIDDEN.urls[url] = shown_url(url)
        # (httpx missing, or a URL it cannot read: it sends nothing, logs nothing)
        with contextlib.suppress(Exception):
            _HIDDEN.urls[str(load_httpx().URL(url))] = shown
    logger = logging.getLogger("httpx")
    if _HIDDEN not in logger.filters:
        logger.addFilter(_HIDDEN)


class Deliverer:
    """Delivers the due events of a store's queue, one pass at a time."""

    def __init__(self, store: Store, webhooks: Mapping[str, Webhook],
                 clock: Callable[[], float], *, lease_s: float = 60.0,
                 redact: Callable[[str], str] | None = None) -> None:
        hide_in_httpx_logs(webhooks)
        self.store = store
        self.redact = redact
        self.webhooks = dict(webhooks)
        self.clock = clock
        # (one attempt never outlasts its webhook's timeout: the claim outlasts it)
        self.lease_s = max([lease_s, *(2 * w.timeout for w in self.webhooks.values())])
        self.delivered = 0
        self.failed_attempts = 0

    async def deliver_due(self, client: httpx.AsyncClient, *, limit: int = 50) -> int:
        """One pass: claim what is due now for this engine's webhooks (another URL's events
        wait for an engine that has it), one event at a time right before it is POSTed (a
        claim of a batch would run out while a slow receiver takes the first ones, and
        another engine send the rest at once), record the outcome; at most ``limit``
        events. Returns how many were delivered."""
        done = 0
        # What was due when the pass began: an event that failed in it is due again at a
        # later pass at the soonest, even with no backoff (it was tried again at once, to
        # its last attempt, in one pass). The claim still lasts its lease from now.
        began = self.clock()
        for _ in range(limit):
            claimed = await self.store.due_deliveries(
                began, urls=list(self.webhooks), limit=1,
                lease_s=self.lease_s + max(0.0, self.clock() - began))
            if not claimed:
                break
            if await self._deliver(client, claimed[0]):
                done += 1
        return done

    async def _deliver(self, client: httpx.AsyncClient, d: AlertDelivery) -> bool:
        hook = self.webhooks[d.url]
        attempts = d.attempts + 1
        body = {"event": d.event, "alert": alert_json(as_of(d), self.redact)}
        headers = {"Idempotency-Key": d.key, **(hook.headers or {})}
        error: str | None = url_problem(d.url)  # (refused where it was configured)
        asked: str | None = None  # (the answer's Retry-After)
        httpx = load_httpx()
        try:
            if error is None:
                async with asyncio.timeout(hook.timeout):  # (httpx's is per read, not all)
                    resp = await client.post(d.url, json=body, headers=headers,
                                             timeout=hook.timeout)
                if not 200 <= resp.status_code < 300:
                    error = f"HTTP {resp.status_code}"
                    asked = resp.headers.get("Retry-After")
        except httpx.HTTPError as e:
            error = _failure(e)
        except TimeoutError:
            error = f"no answer within {hook.timeout:g}s"
        except Exception as e:  # (a URL httpx cannot send to, a port past 65535: a failed
            error = _failure(e)  # attempt like any other, never the delivery loop's end)
        now = self.clock()
        if error is None:
            self.delivered += 1
            await self.store.delivery_result(d.id, attempts=attempts, delivered=now,
                                             claimed_until=d.claimed_until)
            return True
        self.failed_attempts += 1
        url = shown_url(d.url)
        error = hide_url(error, d.url)[:500]
        # (never due again at the time it failed: a pass takes what was due as it began,
        # so with no backoff it is tried again at the next pass, not in this one)
        wait = max(hook.delay(attempts, retry_after(asked, now)), 0.001)
        next_at = None if attempts >= hook.max_attempts else now + wait
        if not await self.store.delivery_result(d.id, attempts=attempts, next_at=next_at,
                                                error=error, claimed_until=d.claimed_until):
            return False  # (the claim ran out: the engine that holds the event now says)
        extra = {"alert": {"id": d.alert.id, "event": d.event, "webhook": url,
                           "attempts": attempts, "error": error}}
        if next_at is None:
            log.warning("alert %d %s: webhook %s gave up after %s: %s (kept in the "
                        "store: 'convoy alerts --redeliver' queues it again)", d.alert.id,
                        d.event, url, plural(attempts, "attempt"), error, extra=extra)
        else:
            log.info("alert %d %s: webhook %s failed (attempt %d of %d): %s; trying again "
                     "in %gs", d.alert.id, d.event, url, attempts, hook.max_attempts, error,
                     wait, extra=extra)
        return False
