"""The `mockstore.*` commands (mitmweb's command bar, mitmproxy's console, the pytest plugin's
control path): each one a call into the controls the CLI and the admin API use too
(`mockstore.control`), its result written as lines for a person."""

from __future__ import annotations

from collections.abc import Sequence

from mitmproxy import command, exceptions, flow

from .. import control, flows, options, sessions, stubs, stubwatch
from .state import State


class Commands:
    name = "mockstore.commands"

    def __init__(self, state: State):
        self.state = state

    def _command(self, fn):
        try:
            return fn(self.state.controls())
        except control.ControlError as e:
            raise exceptions.CommandError(str(e)) from None

    @command.command("mockstore.endpoints")
    def endpoints(self) -> Sequence[str]:
        """The learned endpoints: template, count, p50/p95 latency, status mix."""
        self.state.catch_up()
        return [f"{e['id']}  n={e['count']} p50={e['p50_ms'] or 0:.1f}ms p95={e['p95_ms'] or 0:.1f}ms "
                f"statuses={e['statuses']}" for e in sorted(self._command(lambda c: c.endpoints()), key=lambda e: e["id"])]

    @command.command("mockstore.flush")
    def flush(self) -> None:
        """Write everything learned so far to the store now."""
        self.state.persist()
        self.state.store.flush()

    @command.command("mockstore.rewind")
    def rewind(self) -> None:
        """Replay recorded sequences from their first recording again: here at once, in every
        other worker on the store within a second (as `mockstore rewind` does)."""
        self.state.model.reset_cursors()
        self.state.store.submit(sessions.bump_rewinds)

    @command.command("mockstore.mode")
    def mode(self, mode: str) -> None:
        """Switch the mode: learn | mock | failover | replay (every worker on the store follows)."""
        try:
            options.check("mock_mode", mode)
        except ValueError as e:
            raise exceptions.CommandError(str(e)) from None
        self._command(lambda c: c.set_mode(mode))

    @command.command("mockstore.drift")
    def drift_alerts(self) -> Sequence[str]:
        """Open contract drift alerts: id, endpoint, score, summary, count."""
        if self.state.drift is None:
            return ["drift watching is off (mock_drift=false)"]
        return [
            f"#{a['id'] or 'new'} {a['endpoint']} score={a['score']} x{a['count']}: {a['summary']}"
            for a in self._command(lambda c: c.drift_alerts(unresolved_only=True))
        ]

    @command.command("mockstore.resolve")
    def resolve(self, alert_id: int, accept: bool = True) -> str:
        """Resolve a drift alert; accept=true takes the new shape into the baseline."""
        a = self._command(lambda c: c.resolve(alert_id, accept=accept))
        return f"#{a['id']} resolved ({a['resolution']})"

    @command.command("mockstore.chaos.add")
    def chaos_add(self, rule_yaml: str) -> str:
        """Add a chaos rule, written as YAML or JSON: '{endpoint: GET /users/{id}, probability: 0.3, effect: error, status: 503}'."""
        import yaml

        try:
            spec = yaml.safe_load(rule_yaml)
        except yaml.YAMLError as e:
            raise exceptions.CommandError(f"the chaos rule is not valid YAML: {e}") from None
        rule = self._command(lambda c: c.chaos_add(spec))
        return f"chaos rule {rule['id']} added"

    @command.command("mockstore.chaos.rm")
    def chaos_rm(self, rule_id: str) -> str:
        """Remove one chaos rule."""
        self._command(lambda c: c.chaos_remove(rule_id))
        return f"chaos rule {rule_id} removed"

    @command.command("mockstore.chaos.enable")
    def chaos_enable(self, on: bool = True, rule_id: str = "") -> str:
        """Switch chaos on or off: all of it, or one rule (its id)."""
        if rule_id:
            self._command(lambda c: c.chaos_rule_enabled(rule_id, on))
            return f"chaos rule {rule_id} {'enabled' if on else 'disabled'}"
        self._command(lambda c: c.chaos_enabled(on))
        return f"chaos {'enabled' if on else 'disabled'}"

    @command.command("mockstore.chaos.clear")
    def chaos_clear(self) -> None:
        """Remove every chaos rule."""
        self._command(lambda c: c.chaos_clear())

    @command.command("mockstore.stub.list")
    def stub_list(self) -> Sequence[str]:
        """The stub mocks: name, status, delay, routes, conditions, where they came from."""
        return self._stub_watch().describe() or ["no stubs (mockstore stub add FILE, or mock_stubs=FILE)"]

    @command.command("mockstore.stub.add")
    def stub_add(self, stubs_yaml: str) -> str:
        """Add stub mocks, written as YAML or JSON as in a stubs file: '{name: items, routes: [{method: GET, path: /items/{id}, defaultResponse: {body: {}}}]}'."""
        import yaml

        watch = self._stub_watch()
        try:
            mocks = stubs.parse(yaml.safe_load(stubs_yaml), "the command")
        except (stubs.StubError, yaml.YAMLError) as e:
            raise exceptions.CommandError(str(e)) from None
        taken = {m.name for m in watch.mocks} & {m.name for m in mocks}
        if taken:
            raise exceptions.CommandError(f"mock {sorted(taken)[0]!r}: field 'name' is already used by a stored mock")
        self.state.store.submit(stubs.later(stubs.save, mocks, source="command"))
        return f"{len(mocks)} stub mock(s) added"

    @command.command("mockstore.stub.enable")
    def stub_enable(self, name: str) -> None:
        """Make a stub mock ACTIVE."""
        self._stub_known(name)
        self.state.store.submit(stubs.later(stubs.update, name, status="ACTIVE"))

    @command.command("mockstore.stub.disable")
    def stub_disable(self, name: str) -> None:
        """Make a stub mock INACTIVE (kept, not answering)."""
        self._stub_known(name)
        self.state.store.submit(stubs.later(stubs.update, name, status="INACTIVE"))

    @command.command("mockstore.stub.rm")
    def stub_rm(self, name: str) -> None:
        """Remove a stub mock, its routes and conditions."""
        self._stub_known(name)
        self.state.store.submit(stubs.later(stubs.remove, name))

    def _stub_watch(self) -> stubwatch.StubWatch:
        if self.state.stubs is None:
            raise exceptions.CommandError("no store open (mock_db)")
        return self.state.stubs

    def _stub_known(self, name: str) -> None:
        if not any(m.name == name or m.id == name for m in self._stub_watch().mocks):
            raise exceptions.CommandError(f"no stub mock {name!r}")

    @command.command("mockstore.snapshot")
    def snapshot(self, verb: str, name: str = "") -> str:
        """Virtual backend snapshots: create NAME | list | restore NAME | delete NAME."""
        if verb == "list":
            return "\n".join(f"{s['name']}\t{s['rows']} rows\t{s['description']}"
                             for s in self._command(lambda c: c.read_snapshots())) or "no snapshots"
        if verb not in ("create", "restore", "delete"):
            raise exceptions.CommandError(f"unknown snapshot verb {verb!r}: create | list | restore | delete")
        if not name:
            raise exceptions.CommandError(f"snapshot {verb}: a snapshot name is required")
        if verb == "create":
            s = self._command(lambda c: c.snapshot_create(name))
            return f"snapshot {s['name']!r} created ({s['rows']} rows)"
        if verb == "restore":
            self._command(lambda c: c.snapshot_restore(name))
            return f"snapshot {name!r} restored"
        self._command(lambda c: c.snapshot_delete(name))
        return f"snapshot {name!r} deleted"

    @command.command("mockstore.reset")
    def reset(self) -> str:
        """Virtual backend: back to the seeded state."""
        self._command(lambda c: c.reset())
        return "virtual data reset to the seeded state"

    @command.command("mockstore.source")
    def source(self, flows_: Sequence[flow.Flow]) -> Sequence[str]:
        """Where each flow's response came from (real, recorded, adapted, synthesized, ...)."""
        return [f.metadata.get(flows.META_KEY, {}).get("source", "real") for f in flows_]
