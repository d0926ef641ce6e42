import json

import pytest

from mockstore.paths import FOLD_AFTER, PathTemplates, classify, singular, split

UUID = "3f2a9c1e-7b4d-4c2a-9e8f-0123456789ab"


def learn_all(t, paths, host="api.example.com"):
    return [t.learn(host, p)[0] for p in paths]


def test_must_pass_examples():
    t = PathTemplates()
    got = learn_all(t, ["/users/1", "/users/2", f"/users/{UUID}",
                        "/articles/how-to-train-a-dragon-x1", "/articles/another-slug-y2",
                        "/users/me"])
    assert got == ["/users/{id}"] * 3 + ["/articles/{slug}"] * 2 + ["/users/me"]
    assert t.templates() == ["/articles/{slug}", "/users/me", "/users/{id}"]


@pytest.mark.parametrize("segment,kind", [
    ("42", "id"), (UUID, "id"), ("507f1f77bcf86cd799439011", "id"), ("deadbeef42", "id"),
    ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "id"), ("2024-01-31", "date"),
    ("how-to-train-a-dragon-x1", "slug"), ("another-slug-y2", "slug"), ("item-42", "slug"),
    ("users", None), ("me", None), ("password-reset", None), ("v2", None), ("deadbeef", None),
    ("", None), ("٣", None), ("2024-13-01", "slug"),
])
def test_classify(segment, kind):
    assert classify(segment) == kind


def test_unique_parameter_names():
    t = PathTemplates()
    assert t.learn("h", "/users/1/orders/2")[0] == "/users/{id}/orders/{order_id}"
    assert t.learn("h", "/categories/1/entries/2")[0] == "/categories/{id}/entries/{entry_id}"
    assert t.learn("h", "/a/1/2/3")[0] == "/a/{id}/{id2}/{id3}"
    assert t.learn("h", "/reports/2024-01-31/2024-02-01")[0] == "/reports/{date}/{date2}"
    assert t.match("h", "/users/7/orders/9") == (
        "/users/{id}/orders/{order_id}", {"id": "7", "order_id": "9"})


def test_literal_preferred_and_frequent_literal_survives_fold():
    t = PathTemplates()
    for _ in range(5):
        t.learn("h", "/users/me")
    t.learn("h", "/users/1")
    assert t.match("h", "/users/me") == ("/users/me", {})
    assert t.match("h", "/users/99") == ("/users/{id}", {"id": "99"})
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    got = learn_all(t, [f"/users/{n}" for n in names], host="h")
    assert got[-1] == "/users/{id}"  # the usernames joined the id parameter
    assert "/users/me" in t.templates("h")
    assert "/users/alice" not in t.templates("h")
    assert t.learn("h", "/users/zoe")[0] == "/users/{id}"


def test_fold_reports_merged_templates():
    t = PathTemplates()
    names = [f"user{c}" for c in "abcdefgh"]
    results = [t.learn("h", f"/people/{n}/posts") for n in names]
    for template, merged in results[:FOLD_AFTER]:
        assert merged == []
        assert template.startswith("/people/user")
    template, merged = results[FOLD_AFTER]
    assert template == "/people/{slug}/posts"
    assert sorted(merged) == sorted(f"/people/{n}/posts" for n in names[:FOLD_AFTER])
    assert results[FOLD_AFTER + 1] == ("/people/{slug}/posts", [])
    assert t.templates("h") == ["/people/{slug}/posts"]


def test_fold_moves_deeper_templates_and_renames():
    t = PathTemplates()
    t.learn("h", "/teams/acme/members/3")
    t.learn("h", "/teams/acme")
    for n in "bcdef":
        template, merged = t.learn("h", f"/teams/{n}x")
    assert template == "/teams/{slug}"
    assert ("/teams/acme/members/{id}", "/teams/{slug}/members/{id}") in t.last_folds
    assert "/teams/acme" in merged
    assert "/teams/acme/members/{id}" not in merged  # it moved, but not into this template
    assert t.templates("h") == ["/teams/{slug}", "/teams/{slug}/members/{id}"]


def test_collections_under_root_are_not_folded():
    t = PathTemplates()
    names = ["posts", "comments", "albums", "photos", "todos", "users", "tags", "carts"]
    got = learn_all(t, [f"/{n}" for n in names] + [f"/api/v1/{n}" for n in names])
    assert got == [f"/{n}" for n in names] + [f"/api/v1/{n}" for n in names]


def test_hosts_are_separate():
    t = PathTemplates()
    t.learn("a.example", "/x/1")
    t.learn("b.example", "/y")
    assert t.hosts() == ["a.example", "b.example"]
    assert t.templates("a.example") == ["/x/{id}"]
    assert t.templates("nope") == []
    assert t.match("b.example", "/x/1") is None
    assert t.match("nope", "/") is None


def test_root_trailing_slash_and_empty_segments():
    t = PathTemplates()
    assert t.learn("h", "")[0] == "/"
    assert t.learn("h", "/")[0] == "/"
    assert t.learn("h", "/users/")[0] == "/users"
    assert t.learn("h", "/a//b")[0] == "/a//b"
    assert t.match("h", "/users/") == ("/users", {})
    assert t.match("h", "/") == ("/", {})
    assert t.match("h", "/users/1") is None


def test_match_backtracks_from_literal_to_parameter():
    t = PathTemplates()
    t.learn("h", "/users/me")
    t.learn("h", "/users/1/orders")
    assert t.match("h", "/users/me/orders") == ("/users/{id}/orders", {"id": "me"})


def test_state_round_trips_through_json():
    t = PathTemplates()
    learn_all(t, ["/users/1/orders/2", "/users/me", "/teams/acme"], host="h")
    for n in "abcdef":
        t.learn("h", f"/teams/{n}q")
    state = json.loads(json.dumps(t.to_state()))
    t2 = PathTemplates.from_state(state)
    assert t2.templates() == t.templates()
    assert t2.to_state() == state
    assert t2.learn("h", "/teams/zz") == ("/teams/{slug}", [])
    assert t2.match("h", "/users/5/orders/6")[1] == {"id": "5", "order_id": "6"}
    assert PathTemplates(None).templates() == []


def test_odd_paths_do_not_crash():
    t = PathTemplates()
    deep = "/" + "/".join(["x"] * 5000)
    template, _ = t.learn("h", deep)
    assert len(split(deep)) == 64
    assert t.match("h", deep)[0] == template
    assert t.learn("h", "/%E2%9C%93/ünïcode/{id}/\x00")[0] == "/%E2%9C%93/ünïcode/{id}/\x00"
    assert t.learn("h", "/q?x=1")[0] == "/q"


def test_singular():
    assert [singular(w) for w in ["orders", "categories", "addresses", "boxes", "status", "news-items"]] == [
        "order", "category", "address", "box", "status", "news_item"]


@pytest.mark.parametrize("state", [{"hosts": 3}, {"version": 9, "hosts": {}}, {"hosts": {"h": {"lit": 5}}},
                                   {"hosts": {"h": {"hits": "many"}}}, "nonsense"])
def test_bad_state_is_a_clear_error(state):
    with pytest.raises(ValueError, match="not a saved PathTemplates state"):
        PathTemplates(state)


def test_two_folds_in_one_learn_compose():
    t = PathTemplates()
    pairs = [("octocat", "hello-world"), ("torvalds", "linux"), ("psf", "requests"),
             ("pallets", "flask"), ("django", "django"), ("numpy", "numpy")]
    for owner, repo in pairs[:-1]:
        t.learn("h", f"/repos/{owner}/{repo}")
    template, merged = t.learn("h", "/repos/numpy/numpy")
    assert template == "/repos/{slug}/{slug2}"
    # the caller only ever knew the concrete templates: those are what it must merge
    assert set(f"/repos/{o}/{r}" for o, r in pairs[:-1]) <= set(merged)
    assert all(new == template for _, new in t.last_folds)
    assert t.templates("h") == [template]


def test_again_counts_as_learning_the_same_path_until_a_fold():
    learned, again = PathTemplates(), PathTemplates()
    for t in (learned, again):
        t.learn("api.test", "/users/7/orders")
    nodes, generation = again.last_nodes, again.generation
    learned.learn("api.test", "/users/7/orders")
    again.again(nodes)
    assert again.to_state() == learned.to_state() and len(nodes) == 4  # root, users, {id}, orders
    for name in ("a", "b", "c", "d", "e", "f"):  # rare literals under /docs: they fold
        again.learn("api.test", f"/docs/{name}")
    assert again.generation > generation
