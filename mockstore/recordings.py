"""The recorded exchanges, as the store keeps them: the one place that reads their rows.

(Writing them is the learner's, through the store's writer: `mockstore.learn.INSERT_EXCHANGE`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import sqlite_utils

from .exchange import DEFAULT_PORTS, Exchange, Request, Response
from .sqltext import from_column

_COLUMNS = ("id, ts, scheme, host, port, method, path, query, req_headers, req_body, status, "
            "resp_headers, resp_body, duration_ms")


def exchanges(db: sqlite_utils.Database, *, after: int = 0, slot: int | None = None) -> Iterator[tuple[int, Exchange]]:
    """(id, exchange) of every recording with an id above `after` (of one worker `slot`'s,
    when given), in recorded order."""
    sql, params = f"select {_COLUMNS} from exchanges where id > ?", [after]
    if slot is not None:
        sql += " and id % 16 = ?"
        params.append(slot)
    for row in db.execute(sql + " order by id", params):
        yield row[0], exchange_from_row(*row[1:])


def exchange_from_row(ts, scheme, host, port, method, path, query, req_headers, req_body, status,
                      resp_headers, resp_body, duration) -> Exchange:
    scheme = scheme or "http"
    port = port or DEFAULT_PORTS.get(scheme, 80)
    host = from_column(host) or ""
    if host.endswith(f":{port}"):  # the column holds the authority
        host = host[: -len(f":{port}")]
    return Exchange(
        Request(
            method=from_column(method), host=host, path=from_column(path) or "/",
            query=[(k, v) for k, v in _json_list(query)],
            headers=[(k, v) for k, v in _json_list(req_headers)],
            body=bytes(req_body or b""), scheme=scheme, port=port,
        ),
        Response(status, [(k, v) for k, v in _json_list(resp_headers)], bytes(resp_body or b"")),
        started=ts or 0.0,
        duration_ms=duration or 0.0,
    )


def _json_list(text) -> list:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


_SUMMARY = "id, ts, method, host, path, status, duration_ms, template, source"


def _summary_row(row) -> dict:
    rid, ts, method, host, path, status, duration, template, source = row
    return {"id": rid, "time": ts, "method": from_column(method), "host": from_column(host),
            "path": from_column(path), "status": status, "latency_ms": duration,
            "template": from_column(template), "source": source or "proxy"}


def recent(db: sqlite_utils.Database, *, limit: int = 50, before: int | None = None) -> list[dict]:
    """The last recordings, newest first: what the admin API shows as recent traffic."""
    sql, params = f"select {_SUMMARY} from exchanges", []
    if before is not None:
        sql += " where id < ?"
        params.append(before)
    return [_summary_row(r) for r in db.execute(sql + " order by id desc limit ?", [*params, limit])]


def summary(db: sqlite_utils.Database, rid: int, *, bodies: bool = False) -> dict:
    """One recording as a summary; with its bodies as text (what is not UTF-8 as a note)."""
    row = db.execute(f"select {_SUMMARY} from exchanges where id = ?", [rid]).fetchone()
    out = _summary_row(row)
    if bodies:
        ex = next(exchanges(db, after=rid - 1), (None, None))[1]
        if ex is not None:
            out["request_body"] = _text(ex.request.body)
            out["response_body"] = _text(ex.response.body)
    return out


def _text(body: bytes) -> str:
    try:
        return body[:16384].decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes, not UTF-8>"
