"""The recorded exchanges, as the store keeps them: the one module that knows their table.

The table is created with the store's own (`mockstore.store`); every query of it is here, so a
change of its columns changes this module and its callers' signatures, nothing else. Rows are
written on the store's writer thread, as `(INSERT_EXCHANGE, row)` (`Store.insert`); the reads
take a connection (`sqlite3` or sqlite-utils) of the caller's thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import sqlite_utils

from .exchange import DEFAULT_PORTS, Exchange, Request, Response
from .sqltext import from_column, to_column

INSERT_EXCHANGE = """insert or replace into exchanges (id, ts, scheme, host, port, method, path, query,
    req_headers, req_body, status, resp_headers, resp_body, duration_ms, template, match_key, source)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

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


# --- by id and match key (exact matching) --------------------------------------------------


def responses(db, ids: list[int]) -> list[tuple[int, Response]]:
    """The recorded responses of these exchanges."""
    marks = ", ".join("?" * len(ids))
    rows = db.execute(f"select id, status, resp_headers, resp_body from exchanges where id in ({marks})", ids)
    return [(id_, response_from_row(status, headers, body)) for id_, status, headers, body in rows]


def ids_of_key(db, key: int) -> tuple[int, ...]:
    """The exchanges recorded for one match key, in recorded order."""
    return tuple(r[0] for r in db.execute("select id from exchanges where match_key = ? order by id", [key]))


def request_of(db, exchange_id: int) -> tuple[int, bytes, list] | None:
    """The match key an exchange was recorded under, its request's body and headers."""
    row = db.execute("select match_key, req_body, req_headers from exchanges where id = ?", [exchange_id]).fetchone()
    return (row[0], row[1] or b"", _json_list(row[2])) if row else None


def has_key(db, key: int) -> bool:
    return db.execute("select 1 from exchanges where match_key = ? limit 1", [key]).fetchone() is not None


def keys(db) -> Iterator[int]:
    """Every distinct match key (one pass over its index)."""
    for (key,) in db.execute("select distinct match_key from exchanges where match_key is not null"):
        yield key


def count_keys(db) -> int:
    return db.execute("select count(distinct match_key) from exchanges").fetchone()[0]


def ids_and_keys(db) -> Iterator[tuple[int, int]]:
    """(id, match key) of every exchange, in recorded order."""
    yield from db.execute("select id, match_key from exchanges order by id")


# --- by endpoint (closest matching, samples) ----------------------------------------------


def of_endpoint(db, host: str, method: str, template: str, *, path: str | None = None, limit: int = 50) -> list[tuple]:
    """The newest recordings of an endpoint (of one path of it, if given), newest first:
    (id, path, query pairs, request body, request headers, status)."""
    sql = "select id, path, query, req_body, req_headers, status from exchanges where host = ? and method = ? and template = ?"
    args = [to_column(host), to_column(method), to_column(template)]
    if path is not None:
        sql += " and path = ?"
        args.append(to_column(path))
    return [
        (id_, from_column(p), [tuple(x) for x in _json_list(query)], req_body or b"", _json_list(headers), status)
        for id_, p, query, req_body, headers, status in db.execute(sql + " order by id desc limit ?", [*args, limit])
    ]


def paths_of(db, host: str, method: str, *, limit: int) -> list[tuple[int, str]]:
    """(id, path) of the newest recordings of one method on one host, newest first."""
    return [(rid, from_column(p)) for rid, p in db.execute(
        "select id, path from exchanges where host = ? and method = ? order by id desc limit ?",
        [to_column(host), to_column(method), limit],
    )]


def latest_response(db, host: str, method: str, template: str, status: int) -> Response | None:
    """The newest response of an endpoint with this status."""
    row = db.execute(
        "select status, resp_headers, resp_body from exchanges where host = ? and method = ? "
        "and template = ? and status = ? order by id desc limit 1",
        [to_column(host), to_column(method), to_column(template), status],
    ).fetchone()
    return response_from_row(*row) if row is not None else None


def successes_of_templates(db, templates: list[str]) -> Iterator[tuple[str, str, str, int, bytes]]:
    """(method, path, template, status, response body) of every 2xx exchange of these
    templates, in recorded order."""
    marks = ", ".join("?" * len(templates))
    for method, path, template, status, body in db.execute(
        f"select method, path, template, status, resp_body from exchanges where template in ({marks}) "
        "and status between 200 and 299 order by id", [to_column(t) for t in templates],
    ):
        yield from_column(method), from_column(path), from_column(template), status, body


def bodies_of_templates(db, templates: list[str], limit: int = -1) -> Iterator[tuple[str, str, str, int, bytes, bytes]]:
    """(method, path, template, status, request body, response body) of every 2xx exchange of
    these templates (the first `limit` of them, if given), in recorded order."""
    marks = ", ".join("?" * len(templates))
    for method, path, template, status, req, resp in db.execute(
        f"select method, path, template, status, req_body, resp_body from exchanges where template in ({marks}) "
        "and status between 200 and 299 order by id limit ?", [*(to_column(t) for t in templates), limit],
    ):
        yield from_column(method), from_column(path), from_column(template), status, req, resp


# --- the model's bookkeeping ----------------------------------------------------------------


def last_ids(db) -> dict[int, int]:
    """The last exchange id of each worker slot."""
    return dict(db.execute("select id % 16, max(id) from exchanges group by id % 16").fetchall())


def retemplate(db, authority: str, old: str, new: str) -> None:
    """Recordings of a template that folded into another follow it."""
    db.execute("update exchanges set template = ? where host = ? and template = ?",
               [to_column(new), to_column(authority), to_column(old)])


# --- whole rows, hosts and paths ------------------------------------------------------------


def schemes(db: sqlite_utils.Database) -> dict[str, str]:
    """The scheme each recorded host was reached by."""
    return {from_column(h): s for h, s in db.execute("select distinct host, scheme from exchanges")}


def paths(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """Every distinct (host, path) recorded."""
    return [(from_column(h), from_column(p)) for h, p in db.execute("select distinct host, path from exchanges")]


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


def response_from_row(status: int, headers: str, body: bytes | None) -> Response:
    """A stored response to answer with; a damaged row raises (the answer is then an error
    saying so, not a response without its headers)."""
    return Response(status, [(k, v) for k, v in json.loads(headers or "[]")], body or b"")


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


def traffic(db: sqlite_utils.Database, *, limit: int = 50, before: int | None = None) -> list[dict]:
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
