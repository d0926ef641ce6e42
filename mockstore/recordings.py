"""The recorded exchanges, as the store keeps them: the one place that reads their rows.

(Writing them is the learner's, through the store's writer: `mockstore.learn.INSERT_EXCHANGE`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import sqlite_utils

from .exchange import DEFAULT_PORTS, Exchange, Request, Response
from .sqltext import from_column, to_column

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


def of_method(db: sqlite_utils.Database, method: str, host: str | None = None) -> Iterator[Exchange]:
    """Every recording of one method (on one host, when given: the authority, as the
    exchanges' `host` column holds it), in recorded order."""
    sql, params = f"select {_COLUMNS} from exchanges where method = ?", [to_column(method)]
    if host:
        sql += " and host = ?"
        params.append(to_column(host))
    for row in db.execute(sql + " order by id", params):
        yield exchange_from_row(*row[1:])


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
