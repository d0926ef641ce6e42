"""Every control of mockstore, in one place: what the CLI, the mitmproxy commands
(`mockstore.*`) and the admin API call. They parse their input and print or serve the result;
what a control does, and every read of the store behind it, is here.

A `Control` acts on live objects: a running proxy hands it its own (its model, drift watch,
chaos rules, virtual backend, mode), so a change is in effect at once in that process; the
command line opens the store and builds them (`Control.open`). Either way a change is also
written to the store, where the other processes sharing it pick it up within a second
(`mockstore.changes`).

Results are plain JSON-ready values. Methods named `read_*` read the store's file: callers on
an event loop run them on a thread; the others only touch memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from . import changes, har, openapi, recordings
from .chaosrules import ChaosRuleError, ChaosRules
from .drift import DriftError, DriftWatch
from .model import Model
from .store import Store

MODES = ("learn", "mock", "failover", "replay")


class ControlError(ValueError):
    """A control refused: the message names what was wrong. `status`: as an HTTP status."""

    status = 400


class NotFound(ControlError):
    status = 404


class Unavailable(ControlError):
    """The control needs something this proxy does not run (drift watching, a virtual backend)."""

    status = 409


class Control:
    def __init__(self, store: Store | None, *, model: Model | None = None, drift: DriftWatch | None = None,
                 chaos: ChaosRules | None = None, vb=None, get_mode: Callable[[], str] | None = None,
                 set_mode: Callable[[str], None] | None = None, source: str = "cli"):
        self.store = store
        self._model, self._drift, self._chaos, self.vb = model, drift, chaos, vb
        self._get_mode, self._set_mode = get_mode, set_mode
        self.source = source  # who adds chaos rules through this control: cli | command | api
        self.owned = False

    @classmethod
    def open(cls, store: Store, *, vb=None) -> "Control":
        """For the command line: the store's objects, built when first needed."""
        c = cls(store, vb=vb)
        c.owned = True
        return c

    # the objects, built on first use when the command line asked for them
    @property
    def model(self) -> Model:
        if self._model is None:
            self._model = Model.load(self.store.reader())
        return self._model

    @property
    def drift(self) -> DriftWatch:
        if self._drift is None:
            if not self.owned:
                raise Unavailable("drift watching is off in this proxy (mock_drift=false)")
            self._drift = DriftWatch(self.store)
        return self._drift

    @property
    def chaos(self) -> ChaosRules:
        if self._chaos is None:
            from .chaos import compile_filter

            self._chaos = ChaosRules(self.store, filter_compiler=compile_filter)
        return self._chaos

    def close(self) -> None:
        """Wait for this control's writes; close the store if it opened it."""
        if self.owned:
            if self.vb is not None:
                self.vb.close()
            self.store.close()

    # --- endpoints --------------------------------------------------------------------

    def endpoints(self) -> list[dict]:
        """The learned endpoints: template, count, latency percentiles, EMA, status mix."""
        return [_endpoint_summary(ep) for ep in sorted(
            self.model.endpoints.values(), key=lambda e: (e.host, e.template, e.method))]

    def find_endpoint(self, text: str):
        """An endpoint by its id ('GET host/template') or by 'METHOD /template' if that is on
        one host only."""
        eps = self.model.endpoints
        if text in eps:
            return eps[text]
        method, _, rest = text.strip().partition(" ")
        method = method.upper()
        hits = [ep for ep in eps.values()
                if ep.method == method and rest in (ep.template, f"{ep.host}{ep.template}", ep.id)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ControlError(f"{text!r} is on several hosts: {', '.join(e.id for e in hits)}; add the host")
        near = self.model.closest_endpoints(method, "", rest.split("/", 1)[-1] if not rest.startswith("/") else rest)
        raise NotFound(f"no endpoint {text!r}; closest: {', '.join(near) or 'none'}")

    def endpoint(self, text: str, *, with_drift: bool = False) -> dict:
        """One endpoint with its schemas (request, and response per status); `with_drift`:
        and its drift statistics (`drift`: None when drift watching is off)."""
        ep = self.find_endpoint(text)
        out = _endpoint_summary(ep)
        if with_drift:
            try:
                out["drift"] = self.drift.stats(ep)
            except Unavailable:
                out["drift"] = None
        out["latency_histogram"] = [{"ms": round(ms, 2), "count": n} for ms, n in _histogram(ep.stats)]
        out["query"] = {k: v.get("count", 0) for k, v in ep.stats.query.items()}
        out["schemas"] = {
            "request": ep.request_schema(),
            "responses": {str(s): ep.response_schema(s) for s in sorted(ep.responses)},
        }
        return out

    def schema(self, text: str, *, status: int | None = None, request: bool = False) -> dict:
        ep = self.find_endpoint(text)
        value = ep.request_schema() if request else ep.response_schema(
            status if status is not None else (ep.stats.main_status or 200))
        if value is None:
            raise NotFound(f"no JSON schema learned for {ep.id}"
                           + ("" if request else f" (statuses seen: {sorted(ep.statuses)})"))
        return value

    def read_samples(self, endpoint: dict, limit: int = 5) -> list[dict]:
        """The last recorded exchanges of an endpoint (a summary from `endpoint`). A row keeps
        the template known when it was recorded (maybe still the literal path), so the rows
        of its host and method are matched against the endpoint as it is now."""
        db = self.store.reader()
        found = []
        for rid, path in recordings.paths_of(db, endpoint["host"], endpoint["method"], limit=2000):
            ep, _ = self.model.find_endpoint(endpoint["method"], endpoint["host"], path or "/")
            if ep is not None and ep.id == endpoint["id"]:
                found.append(recordings.summary(db, rid, bodies=True))
                if len(found) >= limit:
                    break
        return found

    def drift_stats(self, text: str) -> dict:
        return self.drift.stats(self.find_endpoint(text))

    # --- drift ------------------------------------------------------------------------

    def drift_alerts(self, *, unresolved_only: bool = False, endpoint: str | None = None) -> list[dict]:
        return [a.to_dict() for a in self.drift.alerts(unresolved=unresolved_only, endpoint=endpoint)]

    def resolve(self, alert_id: Any, *, accept: bool = True) -> dict:
        try:
            alert_id = int(alert_id)
        except (TypeError, ValueError):
            raise ControlError(f"a drift alert id is a number, not {alert_id!r}") from None
        try:
            return self.drift.resolve(alert_id, accept=accept).to_dict()
        except DriftError as e:
            raise NotFound(str(e)) from None

    # --- chaos ------------------------------------------------------------------------

    def chaos_rules(self) -> dict:
        return {"enabled": self.chaos.enabled, "rules": [r.to_dict() for r in self.chaos.list()]}

    def chaos_rule(self, rule_id: str) -> dict:
        return self._chaos_call(lambda: self.chaos.get(rule_id)).to_dict()

    def chaos_add(self, spec: Any) -> dict:
        return self._chaos_call(lambda: self.chaos.add(spec, source=self.source)).to_dict()

    def chaos_replace(self, rule_id: str, spec: Any) -> dict:
        if not isinstance(spec, dict):
            raise ControlError(f"a chaos rule is a mapping of fields, got {type(spec).__name__}")
        return self._chaos_call(lambda: self.chaos.replace(rule_id, spec, source=self.source)).to_dict()

    def chaos_rule_enabled(self, rule_id: str, on: bool) -> dict:
        return self._chaos_call(lambda: self.chaos.set_enabled(rule_id, on)).to_dict()

    def chaos_remove(self, rule_id: str) -> None:
        self._chaos_call(lambda: self.chaos.remove(rule_id))

    def chaos_clear(self) -> int:
        n = len(self.chaos.list())
        self.chaos.clear()
        return n

    def chaos_enabled(self, on: bool) -> dict:
        self.chaos.enabled = on
        return {"enabled": self.chaos.enabled}

    @staticmethod
    def _chaos_call(fn):
        try:
            return fn()
        except ChaosRuleError as e:
            raise (NotFound if str(e).startswith("no chaos rule") else ControlError)(str(e)) from None

    # --- sessions ---------------------------------------------------------------------

    def rewind(self) -> bool:
        """Recorded sequences replay from their first recording again, in every proxy serving
        from the store (within a second). False if the store did not take the write."""
        from .sessions import bump_rewinds

        self.store.submit(bump_rewinds)
        return self.store.flush() and not self.store.unstored

    # --- mode -------------------------------------------------------------------------

    def mode(self) -> str:
        if self._get_mode is not None:
            return self._get_mode()
        return changes.get_setting(self.store.reader(), "mode") or "learn"

    def read_running_mode(self) -> dict:
        """The mode stored on the store (the last switch: `set_mode`), and the mode of the proxy
        running on it, asked through its admin API (None when none answers: no proxy, or its
        admin API off). They differ when a proxy was started with a mode of its own since."""
        from . import admin

        db = self.store.reader()
        url = admin.recorded_url(db)
        answer = admin.ask(url, admin.store_token(db), "/admin/mode") if url else None
        running = answer.get("mode") if isinstance(answer, dict) else None
        return {"stored": changes.get_setting(db, "mode") or "learn", "running": running,
                "admin": url if running else None}

    def admin_started(self, url: str) -> None:
        """The admin API listens at `url`: where the command line asks (`read_running_mode`)."""
        from . import admin

        self.store.submit(lambda db: admin.record_url(db, url))

    def admin_stopped(self, url: str) -> None:
        from . import admin

        self.store.submit(lambda db: admin.forget_url(db, url))

    def set_mode(self, mode: Any) -> str:
        """Switch this proxy now, and every process on the store within a second."""
        if mode not in MODES:
            raise ControlError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if self._set_mode is not None:
            self._set_mode(mode)
        self.store.submit(lambda db: changes.put_setting(db, "mode", mode, "mode"))
        return mode

    # --- the virtual backend ----------------------------------------------------------

    def _vb(self):
        if self.vb is None:
            raise Unavailable("no virtual backend configured (mock_spec, mock_entities or mock_vb_learned)")
        return self.vb

    def resources(self) -> list[dict]:
        return self._vb().resources()

    def read_rows(self, resource: str) -> list[dict]:
        vb = self._vb()
        if resource not in vb.model.resources:
            raise NotFound(f"no virtual resource {resource!r}; there are: {', '.join(vb.model.resources)}")
        return vb.dump().get(resource, [])

    def read_snapshots(self) -> list[dict]:
        return self._snapshots(lambda s: s.list())

    def snapshot_create(self, name: Any, description: str = "") -> dict:
        return self._vb_call(lambda vb: vb.snapshot_create(name, description or ""))

    def snapshot_restore(self, name: Any) -> dict:
        self._vb_call(lambda vb: vb.snapshot_restore(name))
        return {"restored": name}

    def snapshot_delete(self, name: Any) -> dict:
        if not self._snapshots(lambda s: s.delete(name)):
            raise NotFound(f"no snapshot named {name!r}")
        return {"deleted": name}

    def snapshot_save(self, name: Any, path: str) -> dict:
        """Write a snapshot to a JSON file (a path the person at the command line gave)."""
        return {"saved": name, "file": str(self._snapshots(lambda s: s.save(name, path)))}

    def snapshot_load(self, path: str, name: str | None = None) -> dict:
        """Read a snapshot file into the store, under `name` or the name in the file."""
        return self._snapshots(lambda s: s.load(path, name))

    def _snapshots(self, fn):
        """fn(the snapshots): the virtual backend's, under its lock; without one, on the
        command line, the store's (listing, deleting, saving and loading need no resources)."""
        from .vb.snapshots import Snapshots

        if self.vb is None and self.owned:
            return self._snapshot_call(lambda: fn(Snapshots(self.store.reader().conn)))
        vb = self._vb()
        with vb.lock:
            return self._snapshot_call(lambda: fn(vb.snapshots))

    # --- stubs ------------------------------------------------------------------------

    def read_stubs(self) -> list[dict]:
        """The hand-written stubs, as a stubs file lays them out, with their ids and times."""
        from . import stubs

        return [{**m.spec(), "id": m.id, "source": m.source, "createdAt": m.created_at, "updatedAt": m.updated_at}
                for m in stubs.load(self._stub_db())]

    def stubs_add(self, doc: Any) -> list[str]:
        """Add a mock (as a stubs file writes one), or several (`{"mocks": [...]}`); all or none."""
        from . import stubs

        try:
            mocks = stubs.parse(doc, "the request body") if isinstance(doc, dict) and "mocks" in doc \
                else [stubs.validate_mock(doc, "the request body")]
            stubs.save(self._stub_db(), mocks, source=self.source)
        except stubs.StubError as e:
            raise ControlError(str(e)) from None
        return [m.name for m in mocks]

    def stub_remove(self, name: str) -> dict:
        from . import stubs

        try:
            return {"removed": stubs.remove(self._stub_db(), name)}
        except stubs.StubError as e:
            raise NotFound(str(e)) from None

    def stub_enabled(self, name: str, on: bool) -> dict:
        from . import stubs

        try:
            mock = stubs.update(self._stub_db(), name, status="ACTIVE" if on else "INACTIVE")
        except stubs.StubError as e:
            raise NotFound(str(e)) from None
        return {"name": mock, "status": "ACTIVE" if on else "INACTIVE"}

    def _stub_db(self):
        if self.store is None:
            raise Unavailable("no store: stubs live in the store")
        return self.store.reader()

    def reset(self) -> dict:
        self._vb().reset()
        return {"reset": True}

    def _vb_call(self, fn):
        vb = self._vb()
        return self._snapshot_call(lambda: fn(vb))

    @staticmethod
    def _snapshot_call(fn):
        from .vb.snapshots import SnapshotError

        try:
            return fn()
        except SnapshotError as e:
            raise (NotFound if str(e).startswith("no snapshot") else ControlError)(str(e)) from None

    # --- recordings -------------------------------------------------------------------

    def import_file(self, path: str, *, limit: int = 1024 * 1024, redacting: bool = True,
                    progress: Callable[[int], None] | None = None) -> dict:
        """Learn a HAR or mitmproxy flow file into the store (`mockstore.imports`): how many
        exchanges, and the endpoints whose counts it raised, by how much."""
        from . import imports

        try:
            done = imports.import_file(self.store, path, limit=limit, redacting=redacting, progress=progress)
        except (ValueError, RuntimeError) as e:
            raise ControlError(str(e)) from None
        return {"imported": done.count, "learned": done.learned}

    def read_traffic(self, *, limit: int = 50, before: int | None = None) -> list[dict]:
        """The last recorded exchanges, newest first."""
        if not 1 <= limit <= 1000:
            raise ControlError(f"limit must be 1-1000, not {limit}")
        return recordings.traffic(self.store.reader(), limit=limit, before=before)

    def read_openapi_inputs(self) -> tuple[dict, list]:
        db = self.store.reader()
        return recordings.schemes(db), recordings.paths(db)

    def openapi(self, inputs: tuple[dict, list], *, title: str = "Learned API", version: str = "1.0.0") -> dict:
        """The learned API as OpenAPI 3.1 (`inputs`: from `read_openapi_inputs`)."""
        schemes, seen = inputs
        return openapi.to_openapi(self.model, title=title, version=version, schemes=schemes, seen_paths=seen)

    def read_har(self, fp=None):
        """The recorded exchanges as HAR 1.2, written to `fp`, or returned as text."""
        out = fp if fp is not None else io.StringIO()
        n = har.write_har(har.exchanges_from_store(self.store.reader()), out)
        return n if fp is not None else out.getvalue()


def _histogram(stats) -> list[tuple[float, int]]:
    from .stats import _bucket_ms

    return [(_bucket_ms(b), n) for b, n in sorted(stats.latency.items())]


def _r(v):
    return None if v is None else round(v, 1)


def _endpoint_summary(ep) -> dict:
    s = ep.stats
    return {
        "id": ep.id, "method": ep.method, "host": ep.host, "template": ep.template, "count": s.count,
        "p50_ms": _r(s.percentile(50)), "p95_ms": _r(s.percentile(95)), "p99_ms": _r(s.percentile(99)),
        "ema_ms": _r(s.ema_ms), "statuses": {str(k): v for k, v in sorted(s.statuses.items())},
        "first_seen": ep.first_seen, "last_seen": ep.last_seen,
    }
