"""Learn from traffic captured elsewhere: HAR files (browsers' DevTools, proxies, HAR
exporters) and mitmproxy flow files (`mitmdump -w`).

An import is learning without a proxy: the same Learner, the same store, `source="import"`,
in a worker slot of its own (`IMPORT_SLOT`): its exchange ids and its counted mark are never
a running proxy's, so importing into the store a proxy learns into counts every exchange once
(mockstore.sync). One import at a time per store: two at once would share the slot.
A file that is not what it claims is an error before anything is learned; a broken entry
inside a good file is skipped with a warning, and the rest is imported.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator

from . import har, rebuild
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


def import_file(
    store: Store,
    path: str | os.PathLike,
    *,
    limit: int = 1024 * 1024,
    redacting: bool = True,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Learn every exchange in a HAR or flow file into the store; returns how many.

    Bodies over `limit` bytes are not recorded: their exchanges count for statistics only.
    `progress(n)` is called now and then with the bytes of the file done so far (an
    estimate for flow files), ending with the file's size."""
    kind = detect(path)
    size = os.path.getsize(path)
    model = Model.load(store.reader(), slot=IMPORT_SLOT)
    rebuild.catch_up(store, model, IMPORT_SLOT)  # what an import killed before its last checkpoint left
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
    return count


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
