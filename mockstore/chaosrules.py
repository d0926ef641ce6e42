"""Chaos rules: what to break, where, how often — and a record of what was broken.

Pure on purpose (no mitmproxy): rules are validated, persisted and drawn here, so the CLI and
the tests need no proxy. `mockstore.chaos` turns a drawn rule into a fault on a live flow.

Decisions are seeded without shared randomness: rule R's n-th matching flow fires when
hash(seed, R, n) < probability. The same seed and the same traffic give the same faults, and
adding traffic to one endpoint never shifts the faults injected into another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Optional

import yaml

from mockstore import changes
from mockstore.store import Store, register_tables

log = logging.getLogger("mockstore.chaos")

OPTIONS: list[tuple[str, Any, Any, str]] = [
    ("mock_chaos", Optional[str], None,
     "A YAML file of chaos rules (reloaded when it changes); see `mockstore chaos --help`."),
    ("mock_chaos_enabled", bool, True,
     "Inject chaos at all. Rules are kept either way; `mockstore chaos disable` is the "
     "persisted switch, and both must be on."),
    ("mock_chaos_timeout", int, 120,
     "Longest a 'timeout' rule holds a request, in seconds, if the client never gives up."),
]

EFFECTS: dict[str, set[str]] = {
    "latency": {"ms", "min_ms", "max_ms", "learned", "fallback_ms"},
    "error": {"status", "body", "headers", "content_type"},
    "reset": set(),
    "slow_body": {"bytes_per_second"},
    "timeout": {"seconds"},
}
COMMON = {"id", "description", "method", "endpoint", "template", "host", "filter", "probability",
          "effect", "enabled"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*"}
_LEARNED = re.compile(
    r"^\s*(p\d{1,2}(?:\.\d+)?|p100|mean|median|max|min)\s*(?:[x*×]\s*(\d+(?:\.\d+)?))?\s*$", re.I
)
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ChaosRuleError(ValueError):
    """A rule (or a rules file) is not valid; the message names the rule and the field."""


def validate_options(opts: Any) -> None:
    path = getattr(opts, "mock_chaos", None)
    if path and not Path(path).is_file():
        raise ValueError(f"mock_chaos: no such rules file: {path}")
    timeout = getattr(opts, "mock_chaos_timeout", 120)
    if not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"mock_chaos_timeout must be a whole number of seconds >= 1, got {timeout!r}")


def parse_learned(spec: str) -> tuple[str, float]:
    """'p99 x 3' -> ('p99', 3.0); 'median' -> ('median', 1.0)."""
    m = _LEARNED.match(str(spec))
    if not m:
        raise ValueError(f"expected a statistic and a factor like 'p99 x 3', got {spec!r}")
    return m.group(1).lower(), float(m.group(2) or 1)


@dataclass
class Rule:
    id: str
    effect: str
    probability: float = 1.0
    method: str | None = None
    template: str | None = None
    host: str | None = None
    filter: str | None = None
    params: dict = field(default_factory=dict)
    description: str | None = None
    enabled: bool = True  # a rule switched off is kept, with its counters, and never fires
    source: str = "cli"  # cli | file | command | api
    applied: int = 0
    skipped: int = 0

    def spec(self) -> dict:
        """The rule as written: what `add` accepts and the store keeps."""
        d: dict[str, Any] = {"id": self.id}
        for k in ("description", "method", "template", "host", "filter"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d["probability"] = self.probability
        d["effect"] = self.effect
        d.update(self.params)
        if not self.enabled:
            d["enabled"] = False
        return d

    def to_dict(self) -> dict:
        return {**self.spec(), "enabled": self.enabled, "source": self.source, "applied": self.applied,
                "skipped": self.skipped, "describe": self.describe()}

    def matches(self, method: str, template: str | None, path: str, host: str) -> bool:
        """Method, endpoint template (or, when the endpoint is unknown, the path) and host.
        The flow filter, which needs mitmproxy, is checked by `mockstore.chaos`."""
        if self.method and self.method != "*" and self.method != method.upper():
            return False
        if self.template is not None and not any(
            t is not None and (t == self.template or ("*" in self.template and fnmatchcase(t, self.template)))
            for t in (template, path)
        ):
            return False
        if self.host is not None and not fnmatchcase(host.lower(), self.host.lower()):
            return False
        return True

    def describe(self) -> str:
        p = self.params
        if self.effect == "latency":
            if "ms" in p:
                what = f"latency {p['ms']} ms"
            elif "learned" in p:
                what = f"latency {p['learned']}"
            else:
                what = f"latency {p['min_ms']}-{p['max_ms']} ms"
        elif self.effect == "error":
            what = f"error {p.get('status', 500)}"
        elif self.effect == "slow_body":
            what = f"slow body {p['bytes_per_second']} B/s"
        elif self.effect == "timeout":
            what = "timeout" + (f" {p['seconds']} s" if "seconds" in p else "")
        else:
            what = self.effect
        where = " ".join(x for x in (self.method, self.host, self.template) if x) or "any"
        if self.filter:
            where += f" [{self.filter}]"
        return f"{what} on {where}, p={self.probability:g}"


def validate(raw: Any, *, name: str | None = None,
             filter_compiler: Callable[[str], Any] | None = None) -> Rule:
    """Build a Rule from its written form or raise ChaosRuleError naming the rule and field."""
    if not isinstance(raw, dict):
        raise ChaosRuleError(f"{name or 'chaos rule'}: must be a mapping of fields, got {type(raw).__name__}")
    rid = raw.get("id")
    label = f"chaos rule {rid!r}" if rid is not None else (name or "chaos rule")

    def bad(fieldname: str, problem: str) -> ChaosRuleError:
        return ChaosRuleError(f"{label}: field {fieldname!r} {problem}")

    if rid is not None and (not isinstance(rid, (str, int)) or not _ID.match(str(rid))):
        raise bad("id", "must be letters, digits, '_', '-', '.' or ':' (at most 64)")
    effect = raw.get("effect")
    if effect is None:
        raise bad("effect", f"is required: one of {', '.join(EFFECTS)}")
    if not isinstance(effect, str) or effect not in EFFECTS:
        raise bad("effect", f"is unknown: {effect!r}; expected one of {', '.join(EFFECTS)}")
    for key in raw:
        if key not in COMMON and key not in EFFECTS[effect]:
            allowed = sorted(EFFECTS[effect]) or ["no parameters"]
            raise bad(key, f"is not known for effect {effect!r} (it takes: {', '.join(allowed)})")

    prob = raw.get("probability", 1.0)
    if isinstance(prob, str) and prob.strip().endswith("%"):
        try:
            prob = float(prob.strip()[:-1]) / 100
        except ValueError:
            raise bad("probability", f"must be a number between 0 and 1, got {raw['probability']!r}") from None
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise bad("probability", f"must be a number between 0 and 1, got {prob!r}")

    method = raw.get("method")
    template = raw.get("template")
    if raw.get("endpoint") is not None:
        parts = str(raw["endpoint"]).split(None, 1)
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise bad("endpoint", f"must look like 'GET /users/{{id}}', got {raw['endpoint']!r}")
        if method is not None or template is not None:
            raise bad("endpoint", "cannot be combined with 'method' or 'template'")
        method, template = parts
    if method is not None:
        method = str(method).upper()
        if method not in METHODS:
            raise bad("method", f"is not an HTTP method: {raw.get('method', method)!r}")
    if template is not None and (not isinstance(template, str) or not template.startswith("/")):
        raise bad("template", f"must be a path template starting with '/', got {template!r}")
    host = raw.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        raise bad("host", f"must be a host name (globs allowed), got {host!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise bad("enabled", f"must be true or false, got {enabled!r}")
    flt = raw.get("filter")
    if flt is not None:
        if not isinstance(flt, str) or not flt.strip():
            raise bad("filter", f"must be a mitmproxy filter expression, got {flt!r}")
        if filter_compiler is not None:
            try:
                filter_compiler(flt)
            except ValueError as e:
                raise bad("filter", f"is not a valid mitmproxy filter expression ({e})") from None

    params = {k: raw[k] for k in EFFECTS[effect] if k in raw}
    _validate_params(effect, params, bad)
    desc = raw.get("description")
    return Rule(
        id=str(rid) if rid is not None else "", effect=effect, probability=float(prob),
        method=method, template=template, host=host, filter=flt, params=params,
        description=str(desc) if desc is not None else None, enabled=enabled,
    )


def _number(params: dict, key: str, bad, *, minimum: float = 0, integer: bool = False) -> None:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum or (integer and v != int(v)):
        kind = "a whole number" if integer else "a number"
        raise bad(key, f"must be {kind} >= {minimum:g}, got {v!r}")


def _validate_params(effect: str, p: dict, bad) -> None:
    if effect == "latency":
        forms = [k for k in ("ms", "min_ms", "learned") if k in p]
        if len(forms) != 1:
            raise bad("ms", "latency takes exactly one of: ms (fixed), min_ms+max_ms (uniform), "
                            "learned ('p99 x 3')")
        if "ms" in p:
            _number(p, "ms", bad)
        if "min_ms" in p or "max_ms" in p:
            if "min_ms" not in p or "max_ms" not in p:
                raise bad("max_ms" if "min_ms" in p else "min_ms", "is needed with a uniform latency")
            _number(p, "min_ms", bad)
            _number(p, "max_ms", bad)
            if p["max_ms"] < p["min_ms"]:
                raise bad("max_ms", f"must be >= min_ms ({p['min_ms']}), got {p['max_ms']}")
        if "learned" in p:
            try:
                parse_learned(p["learned"])
            except ValueError as e:
                raise bad("learned", str(e)) from None
        if "fallback_ms" in p:
            _number(p, "fallback_ms", bad)
    elif effect == "error":
        p.setdefault("status", 500)
        if isinstance(p["status"], bool) or not isinstance(p["status"], int) or not 100 <= p["status"] <= 599:
            raise bad("status", f"must be an HTTP status 100-599, got {p['status']!r}")
        if "headers" in p and not (
            isinstance(p["headers"], dict) and all(isinstance(v, (str, int)) for v in p["headers"].values())
        ):
            raise bad("headers", "must be a mapping of header name to value")
        if "content_type" in p and not isinstance(p["content_type"], str):
            raise bad("content_type", f"must be a string, got {p['content_type']!r}")
        if "body" in p and not isinstance(p["body"], (str, dict, list)):
            raise bad("body", "must be text, or a mapping/list sent as JSON")
    elif effect == "slow_body":
        if "bytes_per_second" not in p:
            raise bad("bytes_per_second", "is required for a slow body")
        _number(p, "bytes_per_second", bad, minimum=1)
    elif effect == "timeout":
        if "seconds" in p:
            _number(p, "seconds", bad)


def draw(seed: int, rule_id: str, n: int, salt: str = "") -> float:
    """A number in [0, 1) fixed by (seed, rule, n): the seeded coin for one decision."""
    h = hashlib.blake2b(f"{seed}\x00{rule_id}\x00{n}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@register_tables
def _migrate(db) -> None:
    db.execute(
        """create table if not exists chaos_rules (
            id text primary key, position integer,
            source text,                     -- cli | file | command
            spec text,                       -- JSON, as accepted by ChaosRules.add
            applied integer default 0, skipped integer default 0
        )"""
    )
    db.execute("create table if not exists chaos_state (key text primary key, value text)")


class ChaosRules:
    """The rule set: from a YAML file, the CLI and commands; persisted; drawn with a seed."""

    reload_interval = 1.0  # seconds between two looks at the rules file's mtime

    def __init__(self, store: Store | None, *, seed: int = 0,
                 filter_compiler: Callable[[str], Any] | None = None):
        self.store = store
        self.seed = seed
        self.filter_compiler = filter_compiler
        self._rules: list[Rule] = []
        self._enabled = True
        self._seen: dict[str, int] = {}  # rule id -> flows it matched (the seeded counter)
        self._deltas: dict[str, list[int]] = {}  # rule id -> [applied, skipped] not yet stored
        self._lock = threading.Lock()
        self._last_counter_flush = time.monotonic()
        self.generation = 0  # this process's changes of rules or switch (see changes.Watch)
        self.path: Path | None = None
        self._mtime: float | None = None
        self._last_look = 0.0
        if store is not None:
            self.refresh()

    # --- the switch -----------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._submit(lambda db: db.execute(
            "insert or replace into chaos_state (key, value) values ('enabled', ?)",
            ["1" if value else "0"],
        ))

    # --- rules ----------------------------------------------------------------------

    def list(self) -> list[Rule]:
        return list(self._rules)

    def active(self) -> bool:
        """Whether any rule can apply to a flow now (the rules file is looked at again first
        if it is due): the per-flow check that nearly always says no."""
        if self.path is not None:
            self.reload_if_changed()
        return self._enabled and any(r.enabled for r in self._rules)

    @property
    def rules(self) -> list[Rule]:
        """The live list (no copy), for the per-flow loop."""
        return self._rules

    def get(self, rule_id: str) -> Rule:
        for r in self._rules:
            if r.id == str(rule_id):
                return r
        raise ChaosRuleError(f"no chaos rule with id {str(rule_id)!r}")

    def add(self, rule: dict, *, source: str = "cli") -> Rule:
        new = validate(rule, name="the new chaos rule", filter_compiler=self.filter_compiler)
        if not new.id:
            taken = {r.id for r in self._rules}
            n = len(self._rules) + 1
            while str(n) in taken:
                n += 1
            new.id = str(n)
        elif any(r.id == new.id for r in self._rules):
            raise ChaosRuleError(f"chaos rule {new.id!r}: field 'id' is already used by another rule")
        new.source = source
        self._rules.append(new)
        self._save([new])
        return new

    def replace(self, rule_id: str, rule: dict, *, source: str = "cli") -> Rule:
        """A new definition for a rule, in its place; its counters stay."""
        old = self.get(rule_id)
        new = validate({**rule, "id": old.id}, name=f"chaos rule {old.id!r}", filter_compiler=self.filter_compiler)
        new.source, new.applied, new.skipped = source, old.applied, old.skipped
        self._rules = [new if r is old else r for r in self._rules]
        self._save([new])
        return new

    def set_enabled(self, rule_id: str, on: bool) -> Rule:
        """Switch one rule on or off (the switch of all of them is `enabled`)."""
        old = self.get(rule_id)
        new = validate({**old.spec(), "enabled": bool(on)}, name=f"chaos rule {old.id!r}",
                       filter_compiler=self.filter_compiler)
        new.source, new.applied, new.skipped = old.source, old.applied, old.skipped
        self._rules = [new if r is old else r for r in self._rules]
        self._save([new])
        return new

    def remove(self, rule_id: str) -> None:
        rule = self.get(rule_id)
        self._rules = [r for r in self._rules if r is not rule]
        self._submit(lambda db: db.execute("delete from chaos_rules where id = ?", [rule.id]))

    def clear(self) -> None:
        self._rules = []
        self._submit(lambda db: db.execute("delete from chaos_rules"))

    # --- the rules file -------------------------------------------------------------

    def load_file(self, path: str | Path) -> list[Rule]:
        """Replace the rules that came from a file with this file's; all or nothing."""
        path = Path(path)
        try:
            mtime = path.stat().st_mtime
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ChaosRuleError(f"cannot read the chaos rules file {str(path)!r}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ChaosRuleError(f"the chaos rules file {str(path)!r} is not UTF-8 text") from None
        rules = self.parse_file_text(text, str(path))
        keep = [r for r in self._rules if r.source != "file"]
        taken = {r.id for r in keep}
        old = {r.id: r for r in self._rules if r.source == "file"}
        for i, r in enumerate(rules):
            if r.id in taken:
                raise ChaosRuleError(
                    f"{path}: chaos rule {r.id!r}: field 'id' is already used by a rule added "
                    f"from the {next(k.source for k in keep if k.id == r.id)}"
                )
            if r.id in old:  # counters survive an edit of the file
                r.applied, r.skipped = old[r.id].applied, old[r.id].skipped
        self._rules = keep + rules
        self.path, self._mtime = path, mtime
        gone = [rid for rid in old if rid not in {r.id for r in rules}]
        self._submit(lambda db: [db.execute("delete from chaos_rules where id = ?", [g]) for g in gone])
        self._save(rules)
        log.info("chaos: %d rule(s) loaded from %s", len(rules), path)
        return rules

    def parse_file_text(self, text: str, name: str = "<rules>") -> list[Rule]:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ChaosRuleError(f"{name}: not valid YAML: {e}") from None
        if doc is None:
            return []
        if isinstance(doc, dict):
            unknown = set(doc) - {"rules"}
            if unknown:
                raise ChaosRuleError(f"{name}: unknown top-level key(s) {sorted(unknown)}; expected 'rules'")
            doc = doc.get("rules") or []
        if not isinstance(doc, list):
            raise ChaosRuleError(f"{name}: expected a list of rules (or 'rules:' with a list)")
        out, ids = [], set()
        for i, raw in enumerate(doc, 1):
            try:
                r = validate(raw, name=f"chaos rule #{i}", filter_compiler=self.filter_compiler)
            except ChaosRuleError as e:
                raise ChaosRuleError(f"{name}: {e}") from None
            r.id = r.id or f"file-{i}"
            if r.id in ids:
                raise ChaosRuleError(f"{name}: chaos rule {r.id!r}: field 'id' is used twice")
            ids.add(r.id)
            r.source = "file"
            out.append(r)
        return out

    def reload_if_changed(self) -> bool:
        """Reload the rules file if it changed; looks at most once a `reload_interval`.
        A broken edit is logged and the previous rules stay."""
        if self.path is None:
            return False
        now = time.monotonic()
        if now - self._last_look < self.reload_interval:
            return False
        self._last_look = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return False
        if mtime == self._mtime:
            return False
        try:
            self.load_file(self.path)
        except ChaosRuleError as e:
            self._mtime = mtime  # don't log the same broken file every second
            log.warning("chaos rules not reloaded, keeping the previous ones: %s", e)
            return False
        return True

    # --- decisions ------------------------------------------------------------------

    def draw(self, rule: Rule) -> tuple[float, float]:
        """The next seeded pair of numbers for this rule: (coin, spread for uniform values)."""
        n = self._seen.get(rule.id, 0)
        self._seen[rule.id] = n + 1
        return draw(self.seed, rule.id, n), draw(self.seed, rule.id, n, "value")

    def count(self, rule: Rule, applied: bool) -> None:
        if applied:
            rule.applied += 1
        else:
            rule.skipped += 1
        with self._lock:
            d = self._deltas.setdefault(rule.id, [0, 0])
            d[0 if applied else 1] += 1
        if time.monotonic() - self._last_counter_flush >= 1.0:
            self.flush_counters()

    def flush_counters(self) -> None:
        """Hand the counters gathered since the last flush to the writer thread."""
        self._last_counter_flush = time.monotonic()
        with self._lock:
            deltas, self._deltas = self._deltas, {}
        if not deltas:
            return
        self._submit(lambda db: [
            db.execute("update chaos_rules set applied = applied + ?, skipped = skipped + ? where id = ?",
                       [a, s, rid])
            for rid, (a, s) in deltas.items()
        ], counters=True)

    # --- the store ------------------------------------------------------------------

    def refresh(self) -> None:
        """Read rules and the switch from the store (e.g. after a CLI change)."""
        if self.store is not None:
            self.apply_stored(self.read_stored(self.store.reader()))

    def read_stored(self, db) -> tuple[bool, list[Rule]]:
        """The switch and the rules as the store has them (any thread: a running proxy reads
        them on its writer thread when `changes` says another process changed them)."""
        row = db.execute("select value from chaos_state where key = 'enabled'").fetchone()
        enabled = row is None or row[0] != "0"
        rules = []
        for rid, source, spec, applied, skipped in db.execute(
            "select id, source, spec, applied, skipped from chaos_rules order by position, id"
        ).fetchall():
            try:
                # a filter was compiled when its rule was added; not again here, off the loop
                # (mitmproxy's filter grammar is not made for two threads at once)
                r = validate(json.loads(spec), name=f"stored chaos rule {rid!r}")
            except (ValueError, TypeError) as e:
                log.warning("chaos: ignoring a stored rule that is no longer valid: %s", e)
                continue
            r.id, r.source = rid, source or "cli"
            r.applied, r.skipped = applied or 0, skipped or 0
            rules.append(r)
        return enabled, rules

    def apply_stored(self, stored: tuple[bool, list[Rule]]) -> None:
        """Take what `read_stored` read: the switch, the rules, their counts (`_count_in`)."""
        enabled, rules = stored
        mine = {r.id: r for r in self._rules}
        with self._lock:
            for r in rules:
                self._count_in(r, (r.applied, r.skipped), mine.get(r.id))
        self._enabled = enabled
        self._rules = rules

    def read_counts(self, db) -> dict[str, tuple[int, int]]:
        """Every rule's stored (applied, skipped): every process's counts handed to the store."""
        return {rid: (a or 0, s or 0) for rid, a, s in db.execute("select id, applied, skipped from chaos_rules")}

    def apply_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        """Take what `read_counts` read (other processes' faults among them)."""
        with self._lock:
            for r in self._rules:
                if r.id in counts:
                    self._count_in(r, counts[r.id], r)

    def _count_in(self, rule: Rule, stored: tuple[int, int], shown: Rule | None) -> None:
        """A rule's counts: the stored ones plus this process's not handed to the store yet,
        and never fewer than it showed (a count handed but not committed when the store was
        read is in what it showed; counts only grow, so the larger is the later)."""
        (a, s), (da, ds) = stored, self._deltas.get(rule.id, (0, 0))
        rule.applied, rule.skipped = a + da, s + ds
        if shown is not None:
            rule.applied, rule.skipped = max(rule.applied, shown.applied), max(rule.skipped, shown.skipped)

    def _save(self, rules: list[Rule]) -> None:
        rows = [(r.id, self._rules.index(r), r.source, json.dumps(r.spec())) for r in rules]
        self._submit(lambda db: [
            db.execute(
                "insert into chaos_rules (id, position, source, spec, applied, skipped) "
                "values (?, ?, ?, ?, 0, 0) on conflict(id) do update set position = excluded.position, "
                "source = excluded.source, spec = excluded.spec",
                row,
            )
            for row in rows
        ])

    def _submit(self, write, *, counters: bool = False) -> None:
        """Queue a write; a change of the rules or the switch (not of counters) is counted in
        the store, so that every process sharing it reloads them (`mockstore.changes`)."""
        if self.store is None:
            return
        if counters:  # the other processes read just the counts (`read_counts`)
            self.store.submit(lambda db: (write(db), changes.bump(db, "chaos-counts")))
        else:
            self.generation += 1
            self.store.submit(lambda db: (write(db), changes.bump(db, "chaos")))

