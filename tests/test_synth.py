import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from mockstore.schemas import SchemaModel
from mockstore.synth import SynthError, coerce, synthesize

SPECS = Path("/work/shared/specs")
DATA = Path("/work/shared/data/jsonplaceholder.json")
FORMATS = jsonschema.FormatChecker()

USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "uuid": {"type": "string", "format": "uuid"},
        "email": {"type": "string"},
        "name": {"type": "string"},
        "first_name": {"type": "string"},
        "username": {"type": "string"},
        "website": {"type": "string"},
        "phone": {"type": "string"},
        "city": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "birthday": {"type": "string", "format": "date"},
        "price": {"type": "number"},
        "age": {"type": "integer"},
        "lat": {"type": "number"},
        "is_admin": {"type": "boolean"},
        "status": {"type": ["null", "string"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "account_id": {"type": "string", "format": "uuid"},
        "email_verified_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "email", "name"],
}


def validate(schema, value, root=None, cls=jsonschema.Draft202012Validator):
    if root is not None:
        schema = {**root, **schema}
    cls(schema, format_checker=FORMATS).validate(value)


def test_deterministic_and_key_sensitive():
    a = synthesize(USER, seed=1, key="GET /users/1")
    assert a == synthesize(USER, seed=1, key="GET /users/1")
    assert a != synthesize(USER, seed=1, key="GET /users/2")
    assert a != synthesize(USER, seed=2, key="GET /users/1")


def test_deterministic_across_processes():
    import subprocess
    import sys

    code = (
        "import json,sys; from mockstore.synth import synthesize; "
        "print(json.dumps(synthesize(json.loads(sys.argv[1]), seed=3, key='k')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(USER)], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == synthesize(USER, seed=3, key="k")


def test_field_names_steer_values():
    v = synthesize(USER, seed=5)
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", v["email"])
    assert " " in v["name"]
    assert v["website"].startswith("http")
    assert 18 <= v["age"] <= 90
    assert -90 <= v["lat"] <= 90
    assert isinstance(v["price"], float)
    assert v["created_at"][:2] == "20" and "T" in v["created_at"]
    assert isinstance(v["is_admin"], bool)


@pytest.mark.parametrize("seed", range(60))
def test_output_validates_over_many_seeds(seed):
    validate(USER, synthesize(USER, seed=seed))


def test_format_wins_over_name():
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "date"}}}
    v = synthesize(schema)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", v["email"])
    schema = {"type": "object", "properties": {"email": {"type": "integer"}}}
    assert isinstance(synthesize(schema)["email"], int)


def test_overrides_coerce_to_schema_type():
    v = synthesize(USER, overrides={"id": "42", "is_admin": "true", "age": "old"})
    assert v["id"] == 42
    assert v["is_admin"] is True
    assert isinstance(v["age"], int)  # "old" cannot be an integer: synthesized kept
    base = synthesize(USER)
    assert v["age"] == base["age"]
    strict = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    assert "b" not in synthesize(strict, overrides={"b": 1})
    assert synthesize(strict, overrides={"a": 7}) == {"a": "7"}


def test_coerce():
    assert coerce("3.5", {"type": "number"}) == (True, 3.5)
    assert coerce("x", {"type": "integer"}) == (False, None)
    assert coerce("2", {"enum": [1, 2]}) == (True, 2)
    assert coerce(None, {"type": ["null", "string"]}) == (True, None)


def test_constraints():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 10, "maximum": 12},
            "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "m": {"type": "integer", "multipleOf": 7, "minimum": 1},
            "s": {"type": "string", "minLength": 30, "maxLength": 31},
            "t": {"type": "string", "maxLength": 2},
            "code": {"type": "string", "pattern": r"^[A-Z]{3}-\d{2,4}(x|y)?$"},
            "e": {"enum": ["a", "b", None]},
            "c": {"const": {"k": 1}},
            "arr": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 3},
                    "minItems": 3, "maxItems": 4, "uniqueItems": True},
            "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
                      "items": False},
            "any": {"anyOf": [{"type": "null"}, {"type": "string", "format": "email"}]},
            "one": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
            "all": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}},
                               "required": ["a"]},
                              {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    for seed in range(40):
        v = synthesize(schema, seed=seed)
        validate(schema, v)
        assert v["e"] in ("a", "b")
        assert set(v["all"]) >= {"a", "b"}


def test_draft4_boolean_exclusive_bounds():
    schema = {"type": "integer", "minimum": 1, "exclusiveMinimum": True, "maximum": 3,
              "exclusiveMaximum": True}
    assert {synthesize(schema, seed=s) for s in range(20)} == {2}


def test_recursive_refs_are_capped():
    root = {
        "definitions": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/definitions/Node"}, {"type": "null"}]},
                },
                "required": ["name"],
            }
        }
    }
    for seed in range(10):
        v = synthesize({"$ref": "#/definitions/Node"}, root=root, seed=seed)
        validate({"$ref": "#/definitions/Node"}, v, root=root)
    assert len(json.dumps(v)) < 2_000_000


def test_bad_input_gives_clear_errors():
    with pytest.raises(SynthError, match="schema must be an object"):
        synthesize("not a schema")  # type: ignore[arg-type]
    with pytest.raises(SynthError, match="not found"):
        synthesize({"$ref": "#/components/schemas/Missing"}, root={})
    with pytest.raises(SynthError, match="local"):
        synthesize({"$ref": "http://example.com/x.json"})
    deep: dict = {"type": "string"}
    for _ in range(3000):
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    with pytest.raises(SynthError, match="nested too deeply"):
        synthesize(deep)
    # nonsense keywords never crash
    for odd in ({"type": "wat"}, {"pattern": "(unclosed"}, {"type": "string", "pattern": r"(a)\1"},
                {"type": "array", "items": "x"}, {"minimum": "z"}, {"properties": []}):
        synthesize(odd)


def test_learned_schema_round_trip():
    """What schemas.py learns from a real data set, synth can fill, and it validates."""
    data = json.loads(DATA.read_text())
    for name, rows in data.items():
        model = SchemaModel()
        for row in rows:
            model.add(row)
        schema = model.to_schema()
        for seed in range(5):
            validate(schema, synthesize(schema, seed=seed, key=name))


# -- the real OpenAPI documents ---------------------------------------------------------


def _openapi_to_jsonschema(node):
    """OpenAPI 3.0 / Swagger 2 -> JSON Schema: `nullable` becomes a type list."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items()}
    if out.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
    return out


def _schemas_of(doc):
    """(pointer, schema) for every named schema and every inline JSON body schema."""
    for group in ("definitions",):
        for name in doc.get(group) or {}:
            yield f"#/{group}/{name}"
    for name in (doc.get("components") or {}).get("schemas") or {}:
        yield f"#/components/schemas/{name}"
    for path, item in (doc.get("paths") or {}).items():
        for method, op in (item or {}).items():
            if not isinstance(op, dict):
                continue
            esc = path.replace("~", "~0").replace("/", "~1")
            for status, resp in (op.get("responses") or {}).items():
                if not isinstance(resp, dict):
                    continue
                base = f"#/paths/{esc}/{method}/responses/{status}"
                if "schema" in resp:
                    yield base + "/schema"
                for ctype, media in (resp.get("content") or {}).items():
                    if isinstance(media, dict) and "schema" in media and "json" in ctype:
                        yield base + f"/content/{ctype.replace('/', '~1')}/schema"


def _spec_cases():
    for path in sorted(SPECS.glob("*")):
        if path.suffix in (".yaml", ".yml", ".json"):
            yield pytest.param(path, id=path.name)


@pytest.mark.parametrize("spec", list(_spec_cases()))
def test_real_openapi_schemas(spec):
    doc = yaml.safe_load(spec.read_text())
    is31 = str(doc.get("openapi", "")).startswith("3.1")
    cls = jsonschema.Draft202012Validator if is31 else jsonschema.Draft4Validator
    converted = _openapi_to_jsonschema(doc)
    pointers = list(_schemas_of(doc))
    checked = 0
    for pointer in pointers:
        for seed in range(3):
            value = synthesize({"$ref": pointer}, root=doc, seed=seed, key=pointer)
            validate({"$ref": pointer}, value, root=converted, cls=cls)
            checked += 1
    assert checked == 3 * len(pointers)
