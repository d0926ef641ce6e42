"""HAR 1.2 in and out: what browsers' DevTools save, and what they (and HAR viewers) open.

Reading is forgiving: a HAR from a real browser holds aborted requests (status 0), HTTP/2
pseudo-headers, bodies that were never captured, and the odd malformed entry. Those
entries are skipped with a reason, never allowed to end the import. Only a file that is
not a HAR at all is an error.

Bodies in a HAR are already decoded (`content.text`, base64 when binary), even when the
headers still say `Content-Encoding: gzip`; a few tools store the raw compressed bytes
instead, so an encoded body is decoded when it can be and kept as it is otherwise.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from http import HTTPStatus
from typing import IO, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import sqlite_utils

from . import __version__, bodies
from .exchange import DEFAULT_PORTS, Exchange, Headers, Request, Response, header
from .sqltext import from_column

log = logging.getLogger("mockstore.har")


class HarEntry(NamedTuple):
    """One entry of a HAR file as read: the exchange, or None when the entry was skipped;
    `problem` says why a body was dropped or the entry skipped; `index` of `total` entries."""

    exchange: Exchange | None
    problem: str | None
    index: int
    total: int


# --- reading ---------------------------------------------------------------------------


def read_har(path: str | os.PathLike, limit: int) -> Iterator[Exchange]:
    """The exchanges of a HAR file. Broken entries are skipped (and logged); bodies over
    `limit` bytes come back empty."""
    for entry in read_entries(path, limit):
        if entry.exchange is None:
            log.warning("%s", entry.problem)
        else:
            yield entry.exchange


def read_entries(path: str | os.PathLike, limit: int) -> Iterator[HarEntry]:
    """Every entry of a HAR file, with the reason it was skipped or lost its body.

    Raises ValueError("x.har: not a HAR file: ...") when the file is not a HAR at all."""
    name = os.path.basename(os.fspath(path))
    entries = _load_entries(path, name)
    total = len(entries)
    for i, raw in enumerate(entries):
        try:
            exchange, problem = _entry(raw, limit)
        except _Broken as e:
            yield HarEntry(None, f"{name}: entry {i} skipped: {e}", i, total)
            continue
        yield HarEntry(exchange, f"{name}: entry {i}: {problem}" if problem else None, i, total)


class _Broken(Exception):
    pass


def _load_entries(path: str | os.PathLike, name: str) -> list:
    def bad(why: str) -> ValueError:
        return ValueError(f"{name}: not a HAR file: {why}")

    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise bad("it is a folder") from None
    if is_compressed(data):
        try:
            data = zlib.decompress(data, 47)  # zlib or gzip, by header
        except zlib.error as e:
            raise bad(f"broken compressed file ({e})") from None
    # HAR is JSON and JSON is UTF-8; UTF-16 files from some Windows tools have a BOM
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise bad(f"not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text (a binary file?)") from None
    del data
    try:
        doc = json.loads(text)
    except RecursionError:
        raise bad("JSON nested too deeply") from None
    except ValueError as e:
        raise bad(f"broken JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("log"), dict):
        raise bad('no "log" object at the top')
    entries = doc["log"].get("entries")
    if not isinstance(entries, list):
        raise bad('no "log.entries" list')
    return entries


def is_compressed(head: bytes) -> bool:
    """A gzip'd HAR (`x.har.gz`) or a zlib'd one (mitmproxy's `save.har` to `x.zhar`)."""
    return head[:2] == b"\x1f\x8b" or (len(head) > 1 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0)


def _entry(e: object, limit: int) -> tuple[Exchange, str | None]:
    if not isinstance(e, dict):
        raise _Broken("not an object")
    req, resp = e.get("request"), e.get("response")
    if not isinstance(req, dict) or not isinstance(resp, dict):
        raise _Broken("no request or no response")
    status = resp.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
        # browsers write status 0 for requests that never got an answer
        raise _Broken(f"no real response (status {status!r})")
    method = req.get("method")
    url = req.get("url")
    if not isinstance(method, str) or not method or not isinstance(url, str):
        raise _Broken("request without method or url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _Broken(f"bad url {url[:200]!r}: {e}") from None
    scheme = (parts.scheme or "http").lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise _Broken(f"not an http(s) url: {url[:200]!r}")
    problems: list[str] = []

    req_headers = _headers(req.get("headers"))
    req_body = _request_body(req.get("postData"), req_headers, limit, problems)
    resp_headers = _headers(resp.get("headers"))
    content = resp.get("content") if isinstance(resp.get("content"), dict) else {}
    resp_body = _response_body(content, resp_headers, limit, problems)
    mime = content.get("mimeType")
    if header(resp_headers, "content-type") is None and isinstance(mime, str) and mime and resp_body:
        resp_headers.append(("content-type", mime))

    request = Request(
        method=method.upper(),
        host=parts.hostname,
        path=parts.path or "/",
        query=parse_qsl(parts.query, keep_blank_values=True),
        headers=req_headers,
        body=req_body,
        scheme=scheme,
        port=port or DEFAULT_PORTS[scheme],
    )
    duration = e.get("time")
    exchange = Exchange(
        request,
        Response(status, resp_headers, resp_body),
        started=_timestamp(e.get("startedDateTime")),
        duration_ms=float(duration) if isinstance(duration, (int, float)) and duration > 0 else 0.0,
    )
    return exchange, "; ".join(problems) or None


def _headers(raw: object) -> Headers:
    out: Headers = []
    if not isinstance(raw, list):
        return out
    for h in raw:
        if not isinstance(h, dict):
            continue
        k, v = h.get("name"), h.get("value")
        # HTTP/2 pseudo-headers (":authority", ":path") are in the url already
        if isinstance(k, str) and k and not k.startswith(":") and v is not None:
            out.append((k, str(v)))
    return out


def _request_body(post: object, headers: Headers, limit: int, problems: list[str]) -> bytes:
    if not isinstance(post, dict):
        return b""
    text = post.get("text")
    if not isinstance(text, str):
        params = post.get("params")
        if not isinstance(params, list) or not params:
            return b""
        pairs = [(p.get("name", ""), p.get("value", "")) for p in params if isinstance(p, dict)]
        text = urlencode(pairs)
        if header(headers, "content-type") is None:
            headers.append(("content-type", "application/x-www-form-urlencoded"))
    if not text:
        return b""
    if header(headers, "content-type") is None and isinstance(post.get("mimeType"), str) and post["mimeType"]:
        headers.append(("content-type", post["mimeType"]))
    return _body(text, post.get("encoding"), header(headers, "content-encoding"), limit, "request", problems)


def _response_body(content: dict, headers: Headers, limit: int, problems: list[str]) -> bytes:
    text = content.get("text")
    if not isinstance(text, str) or not text:
        return b""
    return _body(text, content.get("encoding"), header(headers, "content-encoding"), limit, "response", problems)


def _body(text: str, encoding: object, content_encoding: str | None, limit: int, what: str, problems: list[str]) -> bytes:
    # a cheap bound before decoding anything: base64 is 4/3 the size, UTF-8 at least 1 byte a char
    if len(text) > (limit * 4 // 3 + 4 if encoding == "base64" else limit):
        problems.append(f"{what} body of about {len(text)} bytes is over the limit ({limit})")
        return b""
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as e:
            problems.append(f"{what} body is not valid base64 ({e})")
            return b""
    else:
        # lone surrogates appear in HARs of binary bodies saved as text; keep every byte we can
        data = text.encode("utf-8", "surrogatepass") if _has_surrogates(text) else text.encode("utf-8")
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        try:
            data = bodies.decode(data, content_encoding, limit=limit)
        except bodies.BodyError:
            pass  # the usual case: the HAR holds the decoded body already
    if len(data) > limit:
        problems.append(f"{what} body of {len(data)} bytes is over the limit ({limit})")
        return b""
    return data


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _timestamp(value: object) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


# --- writing ---------------------------------------------------------------------------


def write_har(exchanges: Iterable[Exchange], fp: IO[str]) -> int:
    """Write a HAR 1.2 document to a text file; returns how many entries it holds.

    Entries are written one at a time, so a large store does not have to fit in memory."""
    creator = json.dumps({"name": "mockstore", "version": __version__})
    fp.write('{\n  "log": {\n    "version": "1.2",\n    "creator": ' + creator + ',\n    "pages": [],\n    "entries": [')
    n = 0
    for ex in exchanges:
        fp.write(",\n      " if n else "\n      ")
        fp.write(json.dumps(har_entry(ex)))  # ASCII: header values may hold lone surrogates
        n += 1
    fp.write("\n    ]\n  }\n}\n")
    return n


def har_entry(ex: Exchange) -> dict:
    req, resp = ex.request, ex.response
    started = datetime.fromtimestamp(max(ex.started, 0.0), timezone.utc)
    request: dict = {
        "method": req.method,
        "url": req.url,
        "httpVersion": "HTTP/1.1",
        "cookies": _request_cookies(req.headers),
        "headers": _har_headers(req.headers),
        "queryString": [{"name": k, "value": v} for k, v in req.query],
        "headersSize": -1,
        "bodySize": len(req.body),
    }
    if req.body:
        post: dict = {"mimeType": req.header("content-type") or ""}
        text, encoding = _text(req.body)
        post["text"] = text
        if encoding:
            post["encoding"] = encoding  # not in HAR 1.2 for postData, but what every reader expects
        request["postData"] = post
    content: dict = {"size": len(resp.body), "mimeType": resp.header("content-type") or ""}
    if resp.body:
        content["text"], encoding = _text(resp.body)
        if encoding:
            content["encoding"] = encoding
    duration = max(ex.duration_ms, 0.0)
    return {
        "startedDateTime": started.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "time": duration,
        "request": request,
        "response": {
            "status": resp.status,
            "statusText": _reason(resp.status),
            "httpVersion": "HTTP/1.1",
            "cookies": _response_cookies(resp.headers),
            "headers": _har_headers(resp.headers),
            "content": content,
            "redirectURL": resp.header("location") or "",
            "headersSize": -1,
            "bodySize": len(resp.body),
        },
        "cache": {},
        "timings": {"send": 0, "wait": duration, "receive": 0},
    }


def _text(body: bytes) -> tuple[str, str | None]:
    """A body as HAR text: as it is when it is UTF-8, else base64."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _har_headers(headers: Headers) -> list[dict]:
    return [{"name": k, "value": v} for k, v in headers]


def _request_cookies(headers: Headers) -> list[dict]:
    out = []
    for k, v in headers:
        if k.lower() == "cookie":
            for part in v.split(";"):
                name, eq, value = part.strip().partition("=")
                if name and eq:
                    out.append({"name": name, "value": value})
    return out


def _response_cookies(headers: Headers) -> list[dict]:
    out = []
    for k, v in headers:
        if k.lower() == "set-cookie":
            name, eq, rest = v.partition("=")
            if name.strip() and eq:
                out.append({"name": name.strip(), "value": rest.split(";", 1)[0]})
    return out


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# --- the store -------------------------------------------------------------------------


def exchanges_from_store(db: sqlite_utils.Database) -> Iterator[Exchange]:
    """The recorded exchanges, in recorded order, as plain records."""
    for (ts, scheme, host, port, method, path, query, req_headers, req_body, status, resp_headers,
         resp_body, duration) in db.execute(
        "select ts, scheme, host, port, method, path, query, req_headers, req_body, status, "
        "resp_headers, resp_body, duration_ms from exchanges order by id"
    ):
        scheme = scheme or "http"
        port = port or DEFAULT_PORTS.get(scheme, 80)
        host, method, path = from_column(host) or "", from_column(method), from_column(path)
        if host.endswith(f":{port}"):  # the column holds the authority
            host = host[: -len(f":{port}")]
        yield Exchange(
            Request(
                method=method, host=host, path=path or "/",
                query=[(k, v) for k, v in _json_list(query)],
                headers=[(k, v) for k, v in _json_list(req_headers)],
                body=bytes(req_body or b""), scheme=scheme, port=port,
            ),
            Response(status, [(k, v) for k, v in _json_list(resp_headers)], bytes(resp_body or b"")),
            started=ts or 0.0,
            duration_ms=duration or 0.0,
        )


def _json_list(text: str | None) -> list:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []
