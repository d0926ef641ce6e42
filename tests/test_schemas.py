import json
import timeit
from pathlib import Path

import jsonschema
import pytest

from mockstore.schemas import MAX_DEPTH, SchemaModel, detect_format, scalar_type

DATA = Path("/work/shared/data/jsonplaceholder.json")
FORMATS = jsonschema.FormatChecker()


def check(schema, *samples):
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    for s in samples:
        v.validate(s)


def learn(*samples):
    m = SchemaModel()
    for s in samples:
        m.add(s)
    return m


def test_types_and_required():
    a = {"id": 1, "name": "x", "tags": ["a"], "score": 1.5, "ok": True, "nested": {"k": 1}}
    b = {"id": 2, "name": "y", "tags": [], "score": 2}
    schema = learn(a, b).to_schema()
    assert schema["type"] == "object"
    assert sorted(schema["required"]) == ["id", "name", "score", "tags"]
    props = schema["properties"]
    assert props["id"] == {"type": "integer"}
    assert props["score"] == {"type": "number"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["ok"] == {"type": "boolean"}
    check(schema, a, b)


def test_nullable_is_a_type_list_and_keeps_format():
    samples = [{"at": None}, {"at": "2024-01-31T10:00:00Z"}, {"at": "2024-02-01T00:00:00+02:00"}]
    schema = learn(*samples).to_schema()
    assert schema["properties"]["at"] == {"type": ["null", "string"], "format": "date-time"}
    check(schema, *samples)
    with pytest.raises(jsonschema.ValidationError):
        check(schema, {"at": "yesterday"})
    obj = learn({"o": None}, {"o": {"a": 1}}).to_schema()["properties"]["o"]
    assert obj["type"] == ["null", "object"] and obj["required"] == ["a"]


def test_format_only_when_every_sample_agrees():
    m = learn({"e": "a@example.com"}, {"e": "b@example.org"})
    assert m.to_schema()["properties"]["e"]["format"] == "email"
    m.add({"e": "not an email"})
    assert "format" not in m.to_schema()["properties"]["e"]
    m.add({"e": "c@example.com"})  # a disagreement is never forgotten
    assert "format" not in m.to_schema()["properties"]["e"]
    mixed = learn({"d": "2024-01-31"}, {"d": "2024-01-31T10:00:00Z"}).to_schema()
    assert "format" not in mixed["properties"]["d"]


def test_resume_from_stored_schema():
    m = learn({"e": "a@example.com", "n": None}, {"e": "b@example.com", "n": "x"})
    stored = json.loads(json.dumps(m.to_schema()))
    again = SchemaModel(stored, samples=m.samples)
    assert again.to_schema() == stored
    assert again.samples == 2
    again.add({"e": "c@example.com", "n": None})
    assert again.to_schema() == stored
    again.add({"e": "plain", "n": None, "extra": 1})
    s = again.to_schema()
    assert "format" not in s["properties"]["e"]
    assert "extra" not in s["required"]
    # a format-less stored string stays format-less
    plain = SchemaModel({"type": "string"})
    plain.add("a@example.com")
    assert plain.to_schema() == {"type": "string"}


def test_merge():
    a = learn({"x": 1, "e": "a@example.com"})
    b = learn({"x": None, "y": "s", "e": "b@example.com"})
    a.merge(b)
    s = a.to_schema()
    assert s["properties"]["x"]["type"] == ["integer", "null"]
    assert s["required"] == ["e", "x"]
    assert s["properties"]["e"]["format"] == "email"
    assert a.samples == 2
    a.merge({"type": "object", "properties": {"z": {"type": ["null", "string"], "format": "uuid"}}})
    assert a.to_schema()["properties"]["z"] == {"type": ["null", "string"], "format": "uuid"}
    with pytest.raises(TypeError):
        a.merge("nope")  # type: ignore[arg-type]


def test_real_data_set_validates():
    data = json.loads(DATA.read_text())
    for name, rows in data.items():
        m = learn(*rows)
        schema = m.to_schema()
        check(schema, *rows)
        assert m.samples == len(rows)
    users = learn(*data["users"]).to_schema()["properties"]
    assert users["email"]["format"] == "email"
    assert users["address"]["properties"]["geo"]["required"] == ["lat", "lng"]


def test_top_level_arrays_and_scalars():
    s = learn([{"id": 1}, {"id": 2, "x": "y"}]).to_schema()
    assert s["type"] == "array" and s["items"]["required"] == ["id"]
    mixed = learn(1, "a", None).to_schema()
    check(mixed, 1, "a", None)


def test_deep_input_is_capped():
    deep: list = []
    cur = deep
    for _ in range(5000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    m = learn(deep, {"a": {"b": {"c": 1}}})
    s = m.to_schema()
    assert json.dumps(s).count("items") <= MAX_DEPTH + 1
    doc = {"k": None}
    for _ in range(300):
        doc = {"k": doc}
    learn(doc).to_schema()


def test_bad_values_give_clear_errors():
    m = SchemaModel()
    with pytest.raises(ValueError, match="not a JSON value"):
        m.add({"a": b"\x00bytes"})
    with pytest.raises(ValueError, match="not a JSON value"):
        m.add(object())
    assert m.samples == 0
    assert m.to_schema() == {}  # a refused value leaves no trace


@pytest.mark.parametrize("text,fmt", [
    ("a@example.com", "email"), ("a@b", None), ("x y@example.com", None),
    ("https://example.com/a?b=1", "uri"), ("example.com", None),
    ("2024-01-31", "date"), ("2024-02-30", None), ("2024-01-31T10:00:00Z", "date-time"),
    ("2024-01-31T10:00:00.123+02:00", "date-time"), ("2024-01-31T25:00:00Z", None),
    ("3f2a9c1e-7b4d-4c2a-9e8f-0123456789ab", "uuid"), ("192.168.0.1", "ipv4"),
    ("999.1.1.1", None), ("hello world", None), ("", None), ("\x00\xff", None),
])
def test_detect_format(text, fmt):
    assert detect_format(text) == fmt
    if fmt in FORMATS.checkers:  # our yes is a yes for jsonschema too
        assert FORMATS.conforms(text, fmt)


@pytest.mark.parametrize("text,schema", [
    ("12", {"type": "integer"}), ("-3", {"type": "integer"}), ("1.5", {"type": "number"}),
    ("1e3", {"type": "number"}), ("true", {"type": "boolean"}), ("False", {"type": "boolean"}),
    ("a@example.com", {"type": "string", "format": "email"}), ("abc", {"type": "string"}),
    ("", {"type": "string"}), ("12345678901234567890123", {"type": "number"}),
])
def test_scalar_type(text, schema):
    assert scalar_type(text) == schema


def test_cost_of_one_add():
    """Measured, not asserted: the figure goes in the report."""
    body = {
        "id": 42, "name": "Leanne Graham", "username": "Bret", "email": "Sincere@april.biz",
        "address": {"street": "Kulas Light", "city": "Gwenborough", "zipcode": "92998-3874"},
        "phone": "1-770-736-8031 x56442", "website": "https://hildegard.org",
        "created_at": "2024-01-31T10:00:00Z", "tags": ["a", "b"], "active": True, "score": 12.5,
    }
    size = len(json.dumps(body))
    m = SchemaModel()
    n = 2000
    per_add = timeit.timeit(lambda: m.add(body), number=n) / n
    print(f"\nSchemaModel.add: {per_add * 1e6:.1f} µs for a {size}-byte object")
    assert 300 <= size <= 350
    assert m.samples == n
