"""Learn from traffic captured elsewhere: HAR files (browsers' DevTools, proxies, HAR
exporters) and mitmproxy flow files (`mitmdump -w`).

An import is learning without a proxy: the same Learner, the same store, `source="import"`,
in a worker slot of its own (`IMPORT_SLOT`): its exchange ids and its counted mark are never
a running proxy's, so importing into the store a proxy learns into counts every exchange once
(mockstore.sync). Imports into one store take turns (`one_at_a_time`): two at once would give
the same ids to different exchanges, and the store keeps one row per id (`mockstore.slots`).
A file that is not what it claims is an error before anything is learned; a broken entry
inside a good file is skipped with a warning, and the rest is imported.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from . import har, rebuild, slots
from .exchange import Exchange
from .learn import Learner
from .model import Model
from .options import IMPORT_SLOT
from .store import Store

log = logging.getLogger("mockstore.imports")

# Persist the model and wait for the writer this often, so memory stays bounded on big
# files and an interrupted import keeps what it learned.
CHECKPOINT_EVERY = 1000
# Say why an entry was skipped this many times, then only count.
MAX_WARNINGS = 10

_TNETSTRING = re.compile(rb"\d{1,12}:")


def detect(path: str | os.PathLike) -> str:
    """"har" or "flows" (a mitmproxy flow file), from the content, not the file name."""
    name = os.path.basename(os.fspath(path))
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    if not head:
        raise ValueError(f"{name}: the file is empty")
    if _TNETSTRING.match(head):
        return "flows"
    if har.is_compressed(head):
        try:
            head = zlib.decompressobj(47).decompress(head, 64)
        except zlib.error:
            raise ValueError(f"{name}: a compressed file, but not a HAR file") from None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] == b"{" or head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "har"
    raise ValueError(f"{name}: neither a HAR file nor a mitmproxy flow file")


@dataclass
class Imported:
    count: int  # exchanges learned
    learned: list[dict]  # the endpoints it counted: method, host, template, added


def import_file(
    store: Store,
    path: str | os.PathLike,
    *,
    limit: int = 1024 * 1024,
    redacting: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    """Learn every exchange in a HAR or flow file into the store: how many, and the endpoints
    whose counts this import raised, by how much.

    Bodies over `limit` bytes are not recorded: their exchanges count for statistics only.
    `progress(n)` is called now and then with the bytes of the file done so far (an
    estimate for flow files), ending with the file's size."""
    kind = detect(path)
    with one_at_a_time(store):
        return _import(store, path, kind, limit, redacting, progress)


def _import(store: Store, path, kind: str, limit: int, redacting: bool, progress) -> Imported:
    size = os.path.getsize(path)
    model = Model.load(store.reader(), slot=IMPORT_SLOT)
    rebuild.catch_up(store, model, IMPORT_SLOT)  # what an import killed before its last checkpoint left
    before = {ep_id: ep.count for ep_id, ep in model.endpoints.items()}
    learner = Learner(model, store, redacting=redacting)
    name = os.path.basename(os.fspath(path))
    items = _har_items(path, limit, size) if kind == "har" else _flow_items(path, limit, size)

    count = skipped = dropped = 0
    try:
        for ex, problem, done in items:
            if ex is None:
                skipped += 1
                if skipped <= MAX_WARNINGS:
                    log.warning("%s", problem)
                continue
            if problem:
                dropped += 1
                if dropped <= MAX_WARNINGS:
                    log.info("%s (statistics only)", problem)
            try:
                learner.learn(ex, record_body=problem is None, source="import")
            except Exception as e:  # one odd exchange must not end the import
                skipped += 1
                if skipped <= MAX_WARNINGS:
                    log.warning("%s: exchange %d skipped: %s", name, count + skipped, e)
                continue
            count += 1
            if count % CHECKPOINT_EVERY == 0:
                _checkpoint(store, model)
            if progress is not None:
                progress(min(done, size))
    except ValueError as e:
        if count == 0:
            raise
        # a truncated or damaged file: keep what came before the damage
        log.warning("%s: stopped after %d exchanges: %s", name, count, e)
    finally:
        _checkpoint(store, model)
    if skipped:
        log.warning("%s: %d entries skipped", name, skipped)
    if dropped:
        log.info("%s: %d exchanges learned without their bodies", name, dropped)
    if progress is not None:
        progress(size)
    grown = sorted((ep for ep in model.endpoints.values() if ep.count > before.get(ep.id, 0)),
                   key=lambda ep: (ep.host, ep.template, ep.method))
    return Imported(count, [{"method": ep.method, "host": ep.host, "template": ep.template,
                             "added": ep.count - before.get(ep.id, 0)} for ep in grown])


@contextmanager
def one_at_a_time(store: Store):
    """Hold the store's import slot (`mockstore.slots`); an import beside another waits for
    it, and says so."""
    if str(store.path) == ":memory:":
        yield
        return
    path = os.path.abspath(store.path)
    slot = slots.claim(path, IMPORT_SLOT)
    if slot is None:
        log.warning("another import into %s is running; waiting for it to end", store.path)
        slot = slots.claim(path, IMPORT_SLOT, wait=None)
    try:
        yield
    finally:
        slot.release()


def _checkpoint(store: Store, model: Model) -> None:
    write = model.persist()
    if write is not None:
        store.submit(write)
    if not store.flush(timeout=300):
        raise RuntimeError(f"the store {store.path} did not take the import's writes in time")


Item = tuple[Exchange | None, str | None, int]  # exchange, problem, bytes of the file done


def _har_items(path, limit: int, size: int) -> Iterator[Item]:
    for entry in har.read_entries(path, limit):
        yield entry.exchange, entry.problem, size * (entry.index + 1) // max(entry.total, 1)


def _flow_items(path, limit: int, size: int) -> Iterator[Item]:
    from .flows import read_flow_file  # mitmproxy is a heavy import: only when needed

    done = 0
    for ex in read_flow_file(path, limit):
        done += _wire_size(ex)
        yield ex, _dropped_body(ex), done


def _wire_size(ex: Exchange) -> int:
    """Roughly what an exchange took in the file, for progress."""
    headers = sum(len(k) + len(v) + 4 for k, v in (*ex.request.headers, *ex.response.headers))
    return 600 + headers + len(ex.request.body) + len(ex.response.body)


def _dropped_body(ex: Exchange) -> str | None:
    """Why a flow's body was dropped while reading (too big, undecodable), if it was.

    `read_flow_file` gives an empty body then; the Content-Length still tells."""
    for what, msg, has_body in (
        ("request", ex.request, True),
        ("response", ex.response, ex.request.method != "HEAD" and ex.response.status not in (204, 304)),
    ):
        if msg.body or not has_body:
            continue
        declared = msg.header("content-length")
        if declared and declared.strip().isdigit() and int(declared) > 0:
            return f"{what} body of {declared} bytes was not read (over the limit or undecodable)"
    return None
