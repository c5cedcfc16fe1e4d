"""Errors a person can act on when a store is down: which store, at which address, after how
long, and where to look (the local stack's log, or the setting that points elsewhere). Used by
the CLI and by every stage (``learntrack.pipeline.call_stage``), so a task log says
"Cassandra at 127.0.0.1:9042 is not reachable" instead of a driver's stack trace alone.
"""

from __future__ import annotations

import re
import sys
from urllib.parse import urlsplit

from learntrack.settings import Settings


class StoreUnavailable(RuntimeError):
    """A stage could not reach a store; the message names it and where to look."""


_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#@:]*):[^\s/?#]*@")
_SECRET_PARAM = re.compile(r"([?&;][^=&;\s]*(?:password|passwd|pwd|secret|token|signature|sig|apikey|api_key)"
                           r"[^=&;\s]*=)[^&;#\s]*", re.IGNORECASE)


def redact_uri(text: str) -> str:
    """``text`` with the password of every URI in it (``scheme://user:password@host``) and any
    secret-looking query parameter (``?password=``, ``secret_key=``, ``token=``) replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))


#: store -> (name shown, setting that points at a server that is not the local stack's)
STORES = {"mongo": ("MongoDB", "LEARNTRACK_MONGO_URI"), "redis": ("Redis", "LEARNTRACK_REDIS_URL"),
          "cassandra": ("Cassandra", "LEARNTRACK_CASSANDRA_HOSTS / LEARNTRACK_CASSANDRA_PORT"),
          "neo4j": ("Neo4j", "LEARNTRACK_NEO4J_URI")}
_REASONS = ("Connection refused", "timed out", "No route to host", "Network is unreachable", "Connection reset",
            "Name or service not known", "Temporary failure in name resolution", "nodename nor servname",
            "Authentication failed", "authentication failed", "Unauthorized")


def _authority(uri: str, default_port: int) -> list[tuple[str, int]]:
    """(host, port) of every host in a URI's authority (a replica set lists several)."""
    netloc = urlsplit(uri).netloc.rpartition("@")[2]
    hosts = []
    for part in filter(None, netloc.split(",")):
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit() or (part.startswith("[") and not host.endswith("]")):
            host, port = part, ""  # no port, or a bare IPv6 address
        hosts.append((host, int(port) if port else default_port))
    return hosts


def store_addresses(settings: Settings, store: str) -> list[tuple[str, int]]:
    """The (host, port) pairs the settings point ``store`` at."""
    if store == "mongo":
        return _authority(settings.mongo_uri, 27017)
    if store == "redis":
        return _authority(settings.redis_url, 6379)
    if store == "cassandra":
        return [(h, settings.cassandra_port) for h in settings.cassandra_contact_points]
    return _authority(settings.neo4j_uri, 7687)


def _is_local(settings: Settings, store: str, addresses) -> bool:
    from learntrack.stack.services import all_services

    ports = {s.name: s.port(settings) for s in all_services(settings)}
    local_hosts = {settings.stack_host, "127.0.0.1", "localhost"}
    return bool(addresses) and all(h in local_hosts and p == ports.get(store) for h, p in addresses)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for reason in _REASONS:
        if reason in text:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:160]


def store_unreachable(settings: Settings, store: str, exc: BaseException, waited_s: float | None = None) -> str:
    """'<Store> at <host:port> is not reachable (<error> after N s: <reason>)' and, on a second
    line, where to look: the local stack's status and the service's log, or the setting."""
    name, setting = STORES[store]
    addresses = store_addresses(settings, store)
    shown = ",".join(f"{h}:{p}" for h, p in addresses)
    if store == "mongo" and type(exc).__name__ == "ServerSelectionTimeoutError":
        waited_s = settings.mongo_server_selection_timeout_s
    what = "did not answer in time" if type(exc).__name__ in ("NetworkTimeout", "OperationTimedOut") \
        else "is not reachable"
    cause = type(exc).__name__ + (f" after {waited_s:g} s" if waited_s is not None else "")
    reason = _reason(exc)
    line = f"{name} at {shown} {what} ({cause}{': ' + reason if reason else ''})"
    if _is_local(settings, store, addresses):
        from learntrack.stack.services import all_services

        log = {s.name: s for s in all_services(settings)}[store].log_file(settings)
        hint = f"is the stack up? `learntrack stack status`; log: {log}"
    else:
        hint = f"is the server up, and {setting} right?"
    return f"{line}\n  {hint}"


#: store -> (module, exception class names): a connection failure of that store's client
_FAILURES = (("mongo", "pymongo.errors", ("ConnectionFailure",)),
             ("redis", "redis.exceptions", ("ConnectionError", "TimeoutError")),
             ("cassandra", "cassandra.cluster", ("NoHostAvailable",)),
             ("cassandra", "cassandra", ("OperationTimedOut",)),
             ("neo4j", "neo4j.exceptions", ("ServiceUnavailable", "SessionExpired")))


def store_failure(exc: BaseException | None) -> tuple[str, BaseException] | None:
    """(store, the connection failure) when ``exc`` is, or was caused by, a store's connection
    failure; only clients already imported are considered (nothing heavy is imported here)."""
    for _ in range(5):
        if exc is None:
            return None
        for store, module, names in _FAILURES:
            mod = sys.modules.get(module)
            types = tuple(t for t in (getattr(mod, n, None) for n in names) if isinstance(t, type))
            if types and isinstance(exc, types):
                return store, exc
        exc = exc.__cause__ or exc.__context__
    return None


def explain(settings: Settings, exc: BaseException) -> StoreUnavailable | None:
    """A ``StoreUnavailable`` naming the store when ``exc`` is (or was caused by) a store's
    connection failure, else None."""
    found = store_failure(exc)
    return StoreUnavailable(store_unreachable(settings, *found)) if found else None
