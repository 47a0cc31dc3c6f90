"""``report collect``: new 12290 events from every KMS host into the store (the only I/O).

Per host, ONE runner call (through the same bootstrap, runner and result parser as the
Windows provider) carries two operations: ``licensing.read`` (the host's own
``KeyManagementServiceCurrentCount``, A.2) and ``eventlog.read_activations`` (12290 events
with EventRecordID above the host's bookmark, oldest first, at most ``page_size``;
schemas/runner-payload.json defines it). Only a backlog larger than a page costs more
calls (``more: true``), in the same open WinRM shell; a steady-state re-run is one call.

Hosts run in parallel (``forks`` threads doing network I/O and parsing); the store is
written by the calling thread only (SQLite's single writer), one transaction per page,
through a bounded queue so memory stays flat whatever the backlog. An unreachable or
failing host is recorded with its error and the others still collect; events already
stored are never counted twice (the store ignores a known (host, record id)).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from ..errors import KmsdeployError, ProviderError
from ..model import Host
from .parse import Activation, ParseError, parse_12290
from .store import Store

READ_OP = "eventlog.read_activations"
PAGE_SIZE = 20_000
#: how many unparsable events are quoted per host (all are counted)
MAX_QUOTED = 3

#: fetch(host, bookmark, page_size) -> runner result document ({"ok", "results": [...]})
Fetch = Callable[[Host, int, int], Mapping[str, Any]]


def read_ops(bookmark: int, page_size: int = PAGE_SIZE, *, with_count: bool = True) -> list[dict[str, Any]]:
    """The payload operations of one collect call (values are data, never source)."""
    ops: list[dict[str, Any]] = []
    if with_count:
        ops.append({"id": "count", "op": "licensing.read"})  # takes no args (schemas/runner-payload.json)
    ops.append({"id": "events", "op": READ_OP, "args": {"after_record_id": int(bookmark), "max": int(page_size)}})
    return ops


@dataclass
class Batch:
    """One page of one host's events, parsed."""

    events: list[Activation]
    last_record_id: int           #: highest record id the host returned (parsed or not)
    more: bool                    #: the host has more events after this page
    current_count: int | None     #: KeyManagementServiceCurrentCount (-1: not a KMS host / no requests)
    unparsed: int = 0
    problems: list[str] = field(default_factory=list)
    oldest_record_id: int | None = None


def parse_batch(doc: Mapping[str, Any], bookmark: int) -> Batch:
    """A runner result document -> :class:`Batch`. PURE.

    Raises :class:`ProviderError` when the events operation is missing or failed."""
    from ..providers.windows import results

    whole = results.document_error(doc)
    if whole:
        raise ProviderError(f"the runner refused the payload: {whole}")
    got = results.by_id(doc)
    ev = got.get("events")
    if ev is None or ev.get("status") != "ok":
        err = results.error_text((ev or {}).get("error") or {}) if ev else "no result"
        raise ProviderError(f"reading the Key Management Service log failed: {err}")
    data = ev.get("data") or {}
    count = None
    cnt = got.get("count")
    if cnt is not None and cnt.get("status") == "ok":
        svc = (cnt.get("data") or {}).get("service") or {}
        if svc.get("current_count") is not None:
            count = int(svc["current_count"])
    events: list[Activation] = []
    problems: list[str] = []
    unparsed = 0
    top = bookmark
    for rec in data.get("events") or []:
        try:
            a = parse_12290(rec)
        except ParseError as exc:
            unparsed += 1
            if len(problems) < MAX_QUOTED:
                problems.append(f"record {rec.get('record_id', '?') if isinstance(rec, Mapping) else '?'}: {exc}")
            rid = rec.get("record_id") if isinstance(rec, Mapping) else None
            if isinstance(rid, int) and rid > top:
                top = rid
            continue
        if a.record_id <= bookmark:
            continue  # the host sent something we asked not to get: ignore, never double-count
        events.append(a)
        top = max(top, a.record_id)
    last = max(top, int(data.get("last_record_id") or 0))
    return Batch(events=events, last_record_id=last, more=bool(data.get("more")), current_count=count,
                 unparsed=unparsed, problems=problems, oldest_record_id=data.get("oldest_record_id"))


def winrm_fetch(ctx) -> Fetch:
    """A fetch that keeps one WinRM transport per host open across its pages."""
    from ..providers.windows import WindowsProvider, bootstrap, payload, results

    provider = WindowsProvider()
    lock = threading.Lock()
    transports: dict[str, Any] = {}  # one per host; a host is served by one worker at a time

    def fetch(host: Host, bookmark: int, page_size: int) -> Mapping[str, Any]:
        with lock:
            tr = transports.get(host.name)
        if tr is None:
            tr = provider.transport(host, ctx)
            tr.open()
            with lock:
                transports[host.name] = tr
        text = payload.encode(read_ops(bookmark, page_size), stop_on_error=False)
        res = tr.run(bootstrap.command_line(), bootstrap.frame_stdin(text), idempotent=True)
        try:
            return results.parse_document(res.stdout, res.stderr, res.exit_code, [])
        except results.RunnerOutputError as exc:
            raise ProviderError(str(exc)) from None

    def close_all() -> None:
        with lock:
            opened = list(transports.values())
            transports.clear()
        for tr in opened:
            try:
                tr.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    fetch.close = close_all  # type: ignore[attr-defined]
    return fetch


@dataclass
class HostOutcome:
    """What collecting one host did."""

    host: str
    site: str | None
    new_events: int = 0
    unparsed: int = 0
    calls: int = 0
    current_count: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def collect(store: Store, hosts: Sequence[Host], fetch: Fetch, *, forks: int = 10, page_size: int = PAGE_SIZE,
            now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> list[HostOutcome]:
    """Collect every host (in parallel) into ``store``; returns one outcome per host."""
    outcomes = {h.name: HostOutcome(h.name, h.site) for h in hosts}
    bookmarks = {h.name: store.bookmark(h.name) for h in hosts}
    q: queue.Queue = queue.Queue(maxsize=max(2, forks * 2))

    def work(host: Host) -> None:
        mark = bookmarks[host.name]
        try:
            while True:
                doc = fetch(host, mark, page_size)
                batch = parse_batch(doc, mark)
                q.put(("batch", host, batch))
                if not batch.more or batch.last_record_id <= mark:
                    break
                mark = batch.last_record_id
            q.put(("done", host, None))
        except (KmsdeployError, OSError) as exc:
            q.put(("done", host, f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)))
        except Exception as exc:  # noqa: BLE001 - one host's bug must not stop the others
            q.put(("done", host, f"internal error: {type(exc).__name__}: {exc}"))

    pending = len(hosts)
    with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
        for h in hosts:
            pool.submit(work, h)
        while pending:
            kind, host, item = q.get()
            out = outcomes[host.name]
            if kind == "done":
                pending -= 1
                if item is not None:
                    out.error = item
                    store.record_error(host.name, host.site, item, now())
                continue
            batch: Batch = item
            out.calls += 1
            prev = bookmarks[host.name]
            if batch.oldest_record_id and prev and batch.oldest_record_id > prev + 1:
                out.warnings.append(f"events {prev + 1}..{batch.oldest_record_id - 1} were overwritten in the host's "
                                    "log before they were collected (the log is full or was cleared; A.4)")
            out.new_events += store.ingest(host.name, host.site, batch.events, at=now(), bookmark=batch.last_record_id,
                                           current_count=batch.current_count, unparsed=batch.unparsed,
                                           final=not batch.more)
            bookmarks[host.name] = max(prev, batch.last_record_id)
            out.unparsed += batch.unparsed
            out.warnings.extend(batch.problems)
            if batch.current_count is not None:
                out.current_count = batch.current_count
    closer = getattr(fetch, "close", None)
    if closer:
        closer()
    return [outcomes[h.name] for h in hosts]
