"""Sessions of a run: when a client starts its run again, recorded sequences start again.

One request recorded several times replays its recordings in order (`Model.cursors`). A client
that runs its scenario a second time against the same proxy must get the first recordings
again, not the tail of the last run's: so the cursors rewind when a new client session begins:

- another value of a credential the session going on had (another token or session cookie: a
  new sign-in or sign-up). The redacted placeholder of a secret is one-to-one with it, so the
  value itself is the session's key; a request without credentials belongs to whatever session
  is going on (a client signs in after a few anonymous requests: that is no new run);
- an idle gap of `mock_session_gap` seconds (0: never);
- `mockstore rewind` from the command line: it bumps a counter in the store's meta table,
  which every proxy process sharing the store reads once a second.
"""

from __future__ import annotations

from time import monotonic

from .redact import _credential_header

REWIND_KEY = "rewind"  # meta key of the counter `mockstore rewind` bumps
DEFAULT_GAP = 30.0


class Sessions:
    """Tells, request by request, whether a new client session began (pure: the clock is
    handed in)."""

    def __init__(self, gap: float = DEFAULT_GAP):
        self.gap = gap
        self.credentials: dict[str, str] = {}  # of the session going on: name -> value
        self.last: float | None = None  # when its last request came
        self._raw: list[tuple[str, str]] = []  # the last request's credential headers

    def new(self, headers, now: float | None = None) -> bool:
        """Whether the request with these headers starts a new session (and notes it): a
        credential it shares by name with the session going on has another value. One it
        adds (a cookie set during the run, a token after sign-in) is of the same session.
        Runs for every mocked request: the same credential headers as the last request's are
        told apart by comparing them as they came, nothing parsed."""
        now = monotonic() if now is None else now
        idle = self.last is not None and self.gap > 0 and now - self.last > self.gap
        self.last = now
        names = _NAMES
        raw = [(k, v) for k, v in headers if v and (names.get(k) or (k not in names and _credential_name(k)))]
        if not raw or (raw == self._raw and not idle):
            return idle
        self._raw = raw
        creds = credentials(raw)
        known = self.credentials
        changed = any(known.get(k, v) != v for k, v in creds.items())
        if changed or idle:
            self.credentials = creds
        else:
            known.update(creds)
        return idle or changed


_NAMES: dict[str, bool] = {}  # header name, as it came -> whether it carries a credential


def _credential_name(name: str) -> bool:
    if len(_NAMES) > 4096:  # names are few; a client making up new ones must not grow this
        _NAMES.clear()
    found = _NAMES[name] = _credential_header(name)
    return found


def credentials(headers) -> dict[str, str]:
    """The credentials a request carries, by name: an Authorization or API-key header's value,
    each cookie of a Cookie header (but CSRF tokens, which a server may change at each answer);
    {} without."""
    out: dict[str, str] = {}
    for k, v in headers:
        if not v or not _credential_header(k):
            continue
        name = k.lower()
        if name != "cookie":
            out[name] = v
            continue
        for pair in v.split(";"):
            c, _, value = pair.strip().partition("=")
            if c and "csrf" not in c.lower() and "xsrf" not in c.lower():
                out[f"cookie:{c}"] = value
    return out


def read_rewinds(db) -> int:
    """The store's rewind counter (0 when never bumped)."""
    try:
        row = db.execute("select value from meta where key = ?", [REWIND_KEY]).fetchone()
    except Exception:  # a store without the table yet, or busy: nothing asked
        return 0
    try:
        return int(row[0]) if row else 0
    except (TypeError, ValueError):
        return 0


def bump_rewinds(db) -> None:
    """Ask every proxy serving from this store to rewind: the counter, one more (a write, in
    one statement: two at once both count)."""
    db.execute(
        "insert into meta (key, value) values (?, '1') "
        "on conflict(key) do update set value = cast(value as integer) + 1",
        [REWIND_KEY],
    )
