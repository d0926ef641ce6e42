"""The starting data: rows written in the model or a seed file, plus generated ones.

Generation is deterministic under the seed: the same model and seed give the same rows,
which is what makes "reset" mean something. References pick existing rows, so foreign
keys hold; unique fields are retried until they are.
"""

from __future__ import annotations

import datetime as dt
import random
import zlib
from pathlib import Path
from typing import Any

from faker import Faker

from .entities import load_file, parse_duration
from .ids import IdMaker
from .model import Field, Model, ModelError, Resource

try:  # the shared schema synthesizer, when present
    from mockstore.synth import synthesize as _synthesize
except Exception:  # pragma: no cover - depends on the other module being there
    _synthesize = None


def _stable(*parts: Any) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _when(value: Any, now: dt.datetime) -> dt.datetime:
    """'now', '-30d', '+2h' or an ISO date."""
    if value in (None, "now"):
        return now
    s = str(value)
    if s[:1] in "+-":
        secs = parse_duration(s[1:], "date range")
        return now + dt.timedelta(seconds=secs if s[0] == "+" else -secs)
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ModelError(f"date range: {value!r} is not 'now', '-30d' or an ISO date") from None
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)


class Generator:
    """Values for one field at a time, from a rule or from the field's type and name."""

    def __init__(self, seed: int, data: dict[str, list[dict]], model: Model):
        self.fake = Faker()
        self.seed = seed
        self.data = data
        self.model = model
        # midnight today: generated dates look recent, and stay the same all day for one seed
        self.now = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)

    def value(self, res: Resource, f: Field, rng: random.Random) -> Any:
        self.fake.seed_instance(rng.getrandbits(32))
        rule = f.rule
        if f.ref and rule is None:
            rule = {"ref": f.ref.resource}
        if rule is not None:
            return self._rule(rule, f, rng)
        if f.enum:
            return rng.choice(f.enum)
        if _synthesize is not None and f.schema:
            try:
                return _synthesize(f.schema, seed=self.seed, key=f"{res.name}.{f.name}.{rng.random()}", overrides=None, root=None)
            except Exception:
                pass
        return self._by_type(f, rng)

    def _rule(self, rule: Any, f: Field, rng: random.Random) -> Any:
        fake = self.fake
        if isinstance(rule, str):
            named = {
                "username": fake.user_name, "email": fake.email, "name": fake.name,
                "first_name": fake.first_name, "last_name": fake.last_name, "word": fake.word,
                "sentence": fake.sentence, "text": fake.text, "paragraph": fake.paragraph,
                "url": fake.url, "phone": fake.phone_number, "company": fake.company,
                "city": fake.city, "country": fake.country, "address": fake.address,
                "uuid": lambda: str(fake.uuid4()), "bool": lambda: rng.random() < 0.5,
                "title": lambda: fake.sentence(nb_words=4).rstrip("."),
            }
            if rule in named:
                return named[rule]()
            raise ModelError(f"{f.name}: generate: {rule!r} is not one of {', '.join(sorted(named))}")
        if not isinstance(rule, dict) or len(rule) < 1:
            raise ModelError(f"{f.name}: generate: a rule name or a mapping like {{number: {{min: 1, max: 9}}}}")
        if "const" in rule:
            return rule["const"]
        if "pickOne" in rule:
            options = rule["pickOne"]
            weights = rule.get("weights")
            if not isinstance(options, list) or not options:
                raise ModelError(f"{f.name}: pickOne needs a non-empty list")
            if weights is not None and (not isinstance(weights, list) or len(weights) != len(options)):
                raise ModelError(f"{f.name}: weights must be a list as long as pickOne")
            return rng.choices(options, weights=weights)[0]
        if "number" in rule:
            spec = rule["number"] or {}
            lo, hi = spec.get("min", 0), spec.get("max", 1000)
            if f.type == "integer" or (isinstance(lo, int) and isinstance(hi, int) and "decimals" not in spec):
                return rng.randint(int(lo), int(hi))
            return round(rng.uniform(float(lo), float(hi)), int(spec.get("decimals", 2)))
        if "date" in rule:
            spec = rule["date"] or {}
            a, b = _when(spec.get("from", "-365d"), self.now), _when(spec.get("to", "now"), self.now)
            d = a + (b - a) * rng.random()
            return d.date().isoformat() if f.format == "date" else d.replace(microsecond=0).isoformat()
        if "ref" in rule:
            target = self.model.resources.get(rule["ref"])
            rows = self.data.get(rule["ref"]) or []
            if target is None:
                raise ModelError(f"{f.name}: ref: unknown resource {rule['ref']!r}")
            return rng.choice(rows)[target.pk] if rows else None
        raise ModelError(f"{f.name}: generate: {sorted(rule)} is not a known rule")

    def _by_type(self, f: Field, rng: random.Random) -> Any:
        fake, n = self.fake, f.name.lower()
        if f.type in ("string", "any"):
            if f.format == "email" or "email" in n:
                return fake.email()
            if f.format == "date-time":
                return (self.now - dt.timedelta(seconds=rng.randint(0, 86400 * 365))).replace(microsecond=0).isoformat()
            if f.format == "date":
                return (self.now - dt.timedelta(days=rng.randint(0, 365))).date().isoformat()
            if f.format == "uuid":
                return str(fake.uuid4())
            if f.format in ("uri", "url") or n.endswith("url"):
                return fake.url()
            if "username" in n or n == "login":
                return fake.user_name()
            if n in ("name", "full_name", "fullname"):
                return fake.name()
            if "first" in n:
                return fake.first_name()
            if "last" in n:
                return fake.last_name()
            if "phone" in n:
                return fake.phone_number()
            if n in ("title", "subject"):
                return fake.sentence(nb_words=4).rstrip(".")
            if n in ("body", "description", "content", "text"):
                return fake.paragraph()
            return fake.word()
        if f.type == "integer":
            return rng.randint(1, 1000)
        if f.type == "number":
            return round(rng.uniform(0, 1000), 2)
        if f.type == "boolean":
            return rng.random() < 0.5
        if f.type == "array":
            return []
        return {}


def dependency_order(model: Model) -> list[Resource]:
    """Parents before children, so references have rows to point at."""
    done: list[Resource] = []
    pending = list(model.resources.values())
    while pending:
        for r in pending:
            deps = {f.ref.resource for f in r.fields.values() if f.ref and f.ref.resource != r.name}
            if deps <= {d.name for d in done}:
                done.append(r)
                pending.remove(r)
                break
        else:  # a cycle: take the rest as they come
            done += pending
            break
    return done


def build_seed(model: Model, seed: int) -> dict[str, list[dict]]:
    """Rows for every resource: the declared seed rows first, then `count` generated ones."""
    data: dict[str, list[dict]] = {name: [] for name in model.resources}
    gen = Generator(seed, data, model)
    for res in dependency_order(model):
        rows = data[res.name]
        rng = random.Random(_stable(seed, res.name))
        ids = IdMaker(res.id_rule, res.pk_type, rng)
        taken: set[str] = set()
        for row in res.seed_rows:
            row = dict(row)
            if row.get(res.pk) is None:
                row[res.pk] = ids.next_id(taken)
            taken.add(str(row[res.pk]))
            rows.append(row)
        uniques = {f.name: {str(r.get(f.name)) for r in rows} for f in res.fields.values() if f.unique}
        for _ in range(res.count):
            row = {res.pk: ids.next_id(taken)}
            for f in res.fields.values():
                if f.name == res.pk:
                    continue
                value = gen.value(res, f, rng)
                for attempt in range(50):
                    if f.name not in uniques or str(value) not in uniques[f.name]:
                        break
                    value = gen.value(res, f, rng)
                    if attempt > 40 and isinstance(value, str):
                        value = f"{value}{attempt}"
                if f.name in uniques:
                    uniques[f.name].add(str(value))
                row[f.name] = value
            taken.add(str(row[res.pk]))
            rows.append(row)
    return data


def load_seed_file(path: str | Path) -> dict[str, list[dict]]:
    """A seed file: {resource: [rows]} in JSON or YAML."""
    data = load_file(path, "seed")
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(r, dict) for r in v) for v in data.values()
    ):
        raise ModelError(f"seed: {path} must map resource names to lists of objects")
    return data
