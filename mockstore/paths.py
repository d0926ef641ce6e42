"""Group concrete request paths into templates, per host: `/users/42` -> `/users/{id}`.

Every stat, schema and recorded exchange is keyed by template, so this runs on the proxy's
event loop for every request. It therefore walks a per-host trie of path segments, one
dict lookup per segment in the common case, and never compiles anything per call.

A segment becomes a parameter for one of two reasons:

* it *looks* like a value: an integer, uuid, hex digest, ulid, mongo object id, a date, or
  a slug (`how-to-train-a-dragon-x1`);
* it *is* a value the conversation carried: the client sent it or the API answered it
  earlier in the same traffic (`/members/alice` after a sign-up with `"username": "alice"`, a
  slug a create returned, a label from a list). The learner hands each body's string values
  to `note_values`, which keeps the last `ECHOES` of them per host with the field that first
  carried them; a new literal equal to one becomes a parameter named after that field
  (`/members/{username}`), so one observation is enough. Such a parameter keeps the last
  `VALUES_KEPT` literals it took in its state, so that another process (a worker that saw the
  path but not the body) folds its own literal into it when the two merge;
* its position *behaves* like a value: more than `FOLD_AFTER` distinct, rarely repeated
  literals under the same parent (usernames, country codes). Those literals are then
  folded into the parameter, subtrees included, and the caller is told which templates
  disappeared so it can merge their stats (`learn`'s `merged`, and `last_folds`).

Literals that are seen often stay literal (`/users/me` beside `/users/{id}`), and
`match` prefers a literal child over a parameter.

Trailing slashes are ignored (`/users/` is `/users`); the empty path is `/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from itertools import islice

# More than this many distinct, rarely seen literals at one position make it a parameter.
FOLD_AFTER = 5
# Right under the root or an `/api/v1`-like prefix, collection names are many and each may
# be seen once in a short recording: demand much more evidence there.
FOLD_AFTER_AT_ROOT = 20
# Deeper paths keep their tail as one literal segment.
MAX_SEGMENTS = 64
# A literal seen at most this many times counts as "rarely repeated".
RARE_HITS = 2
# Per host: how many recent string values of bodies are remembered (with their field's name),
# and how many one body may contribute (a big list must not flush the rest).
ECHOES = 4096
ECHOES_PER_BODY = 256
# A body is walked this deep for values.
ECHO_DEPTH = 8
# A parameter made from echoes keeps this many of the literals it took, in its saved state: a
# process that saw the same path without the body that carried it learns it is a value.
VALUES_KEPT = 64

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ULID = re.compile(r"[0-9][0-9A-HJKMNP-TV-Z]{25}")
_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)+")
_NON_WORD = re.compile(r"\W")
_PREFIX = re.compile(r"api|rest|public|internal|latest|v\d+(\.\d+)*|\d+\.\d+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A value that can be a path segment: one word-ish token, no spaces, slashes or dots only.
_ECHO_VALUE = re.compile(r"[A-Za-z0-9_~@+-][A-Za-z0-9_.~@+-]{0,127}")


def classify(segment: str) -> str | None:
    """'id', 'date' or 'slug' when a segment looks like a value, else None."""
    n = len(segment)
    if not n:
        return None
    if segment.isdigit() and segment.isascii():
        return "id"
    if n == 10 and _DATE.fullmatch(segment):
        return "date"
    if n == 36 and _UUID.fullmatch(segment):
        return "id"
    if n == 26 and _ULID.fullmatch(segment):
        return "id"
    if n >= 8 and _HEX.fullmatch(segment) and any(c.isdigit() for c in segment):
        return "id"
    if "-" in segment and _SLUG.fullmatch(segment):
        if segment.count("-") >= 2 or any(c.isdigit() for c in segment):
            return "slug"
    return None


def singular(word: str) -> str:
    """Good enough for collection names: orders -> order, categories -> category."""
    w = _NON_WORD.sub("_", word.lower()).strip("_")
    if w.endswith("ies") and len(w) > 3:
        return w[:-3] + "y"
    if w.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def split(path: str) -> list[str]:
    path = path.split("?", 1)[0].strip("/")
    if not path:
        return []
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:  # keep the trie (and its recursion) shallow
        segments[MAX_SEGMENTS - 1 :] = ["/".join(segments[MAX_SEGMENTS - 1 :])]
    return segments


class _Node:
    __slots__ = ("hits", "ends", "lit", "param", "kind", "promoted", "name", "names", "template", "values")

    def __init__(self, kind: str | None = None):
        self.hits = 0  # observations that went through this node
        self.ends = 0  # observations that ended here
        self.lit: dict[str, _Node] = {}
        self.param: _Node | None = None
        # For a parameter node: its kind, and whether non-value literals are routed into it.
        self.kind = kind
        self.promoted = False
        self.name = ""
        self.names: tuple[str, ...] = ()  # parameter names used from the root down to here
        self.template = "/"
        # For a parameter made from echoes: segments known to be values (see VALUES_KEPT).
        self.values: dict[str, None] | None = None

    def remember(self, segment: str) -> None:
        values = self.values
        if values is None:
            values = self.values = {}
        values.pop(segment, None)
        values[segment] = None
        if len(values) > VALUES_KEPT:
            del values[next(iter(values))]

    def knows(self, segment: str) -> bool:
        return self.values is not None and segment in self.values

    # -- naming ---------------------------------------------------------------------

    def _child_template(self, child: _Node, segment: str | None, parent_literal: str | None) -> None:
        if segment is not None:
            child.names = self.names
            text = segment
        else:
            child.name = _param_name(child.kind or "id", self.names, parent_literal)
            child.names = self.names + (child.name,)
            text = "{" + child.name + "}"
        child.template = ("" if self.template == "/" else self.template) + "/" + text

    def rename(self, own_literal: str | None = None) -> None:
        """Recompute templates and parameter names of the whole subtree (after a fold)."""
        for seg, child in self.lit.items():
            self._child_template(child, seg, None)
            child.rename(seg)
        if self.param is not None:
            self._child_template(self.param, None, own_literal)
            self.param.rename(None)

    # -- folding --------------------------------------------------------------------

    def absorb(self, other: _Node) -> None:
        self.hits += other.hits
        self.ends += other.ends
        for seg in other.values or ():
            self.remember(seg)
        for seg, child in other.lit.items():
            if seg in self.lit:
                self.lit[seg].absorb(child)
            else:
                self.lit[seg] = child
        if other.param is not None:
            if self.param is None:
                self.param = other.param
            else:
                self.param.promoted = self.param.promoted or other.param.promoted
                self.param.absorb(other.param)

    def terminals(self, rel: tuple = ()) -> Iterator[tuple[tuple, _Node]]:
        """(relative path, node) of every template in the subtree; None stands for a parameter."""
        if self.ends:
            yield rel, self
        for seg, child in self.lit.items():
            yield from child.terminals(rel + (seg,))
        if self.param is not None:
            yield from self.param.terminals(rel + (None,))

    def walk(self, rel: tuple) -> _Node:
        node = self
        for seg in rel:
            node = node.param if seg is None else node.lit[seg]  # type: ignore[assignment]
        return node

    # -- state ----------------------------------------------------------------------

    def to_state(self) -> dict:
        state: dict = {"hits": self.hits, "ends": self.ends}
        if self.lit:
            state["lit"] = {seg: child.to_state() for seg, child in self.lit.items()}
        if self.param is not None:
            p = self.param.to_state()
            p["kind"] = self.param.kind
            p["promoted"] = self.param.promoted
            if self.param.values:
                p["values"] = list(self.param.values)
            state["param"] = p
        return state

    @classmethod
    def from_state(cls, state: dict, kind: str | None = None) -> _Node:
        node = cls(kind)
        node.hits = int(state.get("hits", 0))
        node.ends = int(state.get("ends", 0))
        for seg, child in (state.get("lit") or {}).items():
            node.lit[str(seg)] = cls.from_state(child)
        p = state.get("param")
        if p:
            node.param = cls.from_state(p, p.get("kind") or "id")
            node.param.promoted = bool(p.get("promoted"))
            for seg in p.get("values") or ():
                node.param.remember(str(seg))
        return node


def _param_name(kind: str, used: tuple[str, ...], parent_literal: str | None) -> str:
    if kind not in used:
        return kind
    if parent_literal:
        name = f"{singular(parent_literal)}_{kind}"
        if name not in used and name != f"_{kind}":
            return name
    i = 2
    while f"{kind}{i}" in used:
        i += 1
    return f"{kind}{i}"


class PathTemplates:
    """The learned path templates of every host, as one trie per host."""

    def __init__(self, state: dict | None = None):
        self._roots: dict[str, _Node] = {}
        # Every (old template, new template) pair the last `learn` folded away.
        self.last_folds: list[tuple[str, str]] = []
        # The nodes the last `learn` went through, root first: `again` counts an observation
        # of the same path along them, as long as no fold has moved any node since
        # (`generation` is the number of folds so far).
        self.last_nodes: tuple[_Node, ...] = ()
        self.generation = 0
        # Per host: recent string values of bodies -> the field they came in (see note_values).
        # Not saved with the state: they only name what the traffic after them shows.
        self._echoes: dict[str, dict[str, str]] = {}
        if not state:
            return
        try:
            if state.get("version", 1) != 1:
                raise ValueError(f"unknown version {state.get('version')!r}")
            for host, root_state in state["hosts"].items():
                root = _Node.from_state(root_state)
                root.rename()
                self._roots[str(host)] = root
        except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as e:
            raise ValueError(f"not a saved PathTemplates state: {e!r}") from None

    @classmethod
    def from_state(cls, state: dict) -> PathTemplates:
        return cls(state)

    def to_state(self) -> dict:
        return {"version": 1, "hosts": {h: r.to_state() for h, r in self._roots.items()}}

    def hosts(self) -> list[str]:
        return sorted(self._roots)

    def templates(self, host: str | None = None) -> list[str]:
        if host is not None and host not in self._roots:
            return []
        roots = [self._roots[host]] if host is not None else list(self._roots.values())
        return sorted({node.template for root in roots for _, node in root.terminals()})

    def note_values(self, host: str, value) -> None:
        """Remember the string values of a parsed JSON body (request or response) as values
        the conversation carried, each with the name of the field it came in (a list's items
        by the list's name made singular: `"labels": ["intro"]` -> `label`). A path learned
        after this that has one of them as a new segment gets a parameter of that name.

        Bounded: at most `ECHOES_PER_BODY` values of a body, `ECHOES` per host (the oldest
        go), `ECHO_DEPTH` levels deep: well under a microsecond per value, on the event loop."""
        echoes = self._echoes.get(host)
        if echoes is None:
            echoes = self._echoes[host] = {}
        # Named by the field that first carried it (where it came from: the `username` of a
        # sign-up, not the `author` of a reply); most recent last, so eviction takes the oldest.
        _collect(value, "", ECHO_DEPTH, echoes, ECHOES_PER_BODY)
        while len(echoes) > ECHOES:
            del echoes[next(iter(echoes))]

    def echo_name(self, host: str, segment: str) -> str | None:
        """The parameter name a segment gets because a body carried it before, or None."""
        name = self._echoes.get(host, {}).get(segment)
        if not name:
            return None
        if not _NAME.fullmatch(name):
            name = _NON_WORD.sub("_", name).strip("_")
            if not name or name[0].isdigit():
                return None
        return name

    def learn(self, host: str, path: str) -> tuple[str, list[str]]:
        """Observe a path; return (template, merged) where `merged` lists templates that this
        observation just folded into `template`, so the caller can merge their stats.

        A fold can also move deeper templates (`/users/alice/orders` ->
        `/users/{slug}/orders`); all the moves of this call are in `last_folds`."""
        if self.last_folds:
            self.last_folds = []
        node = self._roots.get(host)
        if node is None:
            node = self._roots[host] = _Node()
        node.hits += 1
        nodes = [node]
        merged: list[str] = []
        prefix_only = True  # only root-like literals so far
        parent_literal: str | None = None
        echoes = self._echoes.get(host)
        for seg in split(path):
            child = node.lit.get(seg)
            if child is None:
                kind = classify(seg)
                if kind is None and not prefix_only and (
                    (echoes and seg in echoes) or (node.param is not None and node.param.knows(seg))
                ):  # a value the conversation carried (here, or in another process)
                    child = self._param(node, self.echo_name(host, seg) or "slug", parent_literal)
                    child.remember(seg)
                elif kind is not None or (node.param is not None and node.param.promoted):
                    child = self._param(node, kind or "slug", parent_literal)
                else:
                    child = self._literal(node, seg, prefix_only, parent_literal)
            if child.kind is None:
                parent_literal = seg
                prefix_only = prefix_only and _PREFIX.fullmatch(seg) is not None
            else:
                parent_literal = None
                prefix_only = False
            child.hits += 1
            node = child
            nodes.append(node)
        node.ends += 1
        self.last_nodes = tuple(nodes)
        if self.last_folds:
            merged = [old for old, new in self.last_folds if new == node.template]
        return node.template, merged

    @staticmethod
    def again(nodes: tuple[_Node, ...]) -> None:
        """Observe again the path whose `learn` went through `nodes` (its `last_nodes`), as
        that `learn` did; valid while `generation` has not changed since."""
        for node in nodes:
            node.hits += 1
        nodes[-1].ends += 1

    def merge(self, state: dict) -> None:
        """Unite another process's templates (a `to_state()`) with these, as if this one had
        seen its paths too: a literal either side knows is known, a position either side made
        a parameter is one, and too many rare literals fold as in `learn`. Hits are counted
        as the larger side's (they only tell rare from common). Every template of this side
        that moved is in `last_folds`."""
        self.last_folds = []
        for host, other in PathTemplates(state)._roots.items():
            root = self._roots.get(host)
            if root is None:
                self._roots[host] = other
            else:
                self._unite(host, root, other, True, None)

    def _unite(self, host: str, node: _Node, other: _Node, prefix_only: bool, parent_literal: str | None) -> None:
        node.hits, node.ends = max(node.hits, other.hits), max(node.ends, other.ends)
        if other.param is not None:
            if node.param is None:
                node.param = other.param
                node._child_template(node.param, None, parent_literal)
                node.param.rename(None)
            else:
                node.param.promoted = node.param.promoted or other.param.promoted
                for seg in other.param.values or ():
                    node.param.remember(seg)
                self._unite(host, node.param, other.param, False, None)
        echoes = self._echoes.get(host)
        for seg, theirs in other.lit.items():
            mine = node.lit.get(seg)
            if mine is not None:
                self._unite(host, mine, theirs, prefix_only and _PREFIX.fullmatch(seg) is not None, seg)
            elif node.param is not None and (node.param.promoted or node.param.knows(seg)):
                self._unite(host, node.param, theirs, False, None)  # as `learn` routes a new literal
            elif not prefix_only and echoes and seg in echoes and classify(seg) is None:
                param = self._param(node, self.echo_name(host, seg) or "slug", parent_literal)
                param.remember(seg)
                self._unite(host, param, theirs, False, None)
            elif echoes:  # walked, so that a value deeper in it is met as `learn` would meet it
                mine = node.lit[seg] = _Node()
                node._child_template(mine, seg, parent_literal)
                self._unite(host, mine, theirs, prefix_only and _PREFIX.fullmatch(seg) is not None, seg)
            else:
                node.lit[seg] = theirs
                node._child_template(theirs, seg, parent_literal)
                theirs.rename(seg)
        # Literals of this side the other knows to be values (it saw the body that carried
        # them) are values here too.
        if node.param is not None and node.param.values:
            known = [s for s in node.lit if node.param.knows(s)]
            if known:
                self._fold(node, known, parent_literal, promote=False)
        # `learn` leaves no rare literal beside a promoted parameter (the fold that promoted
        # it took them all, and it takes every new one): nor does a union.
        rare = [s for s, c in node.lit.items() if c.hits <= RARE_HITS]
        promoted = node.param is not None and node.param.promoted
        if rare and (promoted or len(rare) > (FOLD_AFTER_AT_ROOT if prefix_only else FOLD_AFTER)):
            self._fold(node, rare, parent_literal)

    def _param(self, node: _Node, kind: str, parent_literal: str | None) -> _Node:
        if node.param is None:
            node.param = _Node(kind)
            node._child_template(node.param, None, parent_literal)
        return node.param

    def _literal(self, node: _Node, seg: str, prefix_only: bool, parent_literal: str | None) -> _Node:
        limit = FOLD_AFTER_AT_ROOT if prefix_only else FOLD_AFTER
        rare = [s for s, c in node.lit.items() if c.hits <= RARE_HITS]
        if len(rare) + 1 > limit:
            return self._fold(node, rare, parent_literal)
        child = node.lit[seg] = _Node()
        node._child_template(child, seg, parent_literal)
        return child

    def _fold(self, node: _Node, segments: list[str], parent_literal: str | None, promote: bool = True) -> _Node:
        """Turn the position into a parameter, moving the rare literals' subtrees into it."""
        self.generation += 1
        param = self._param(node, "slug", parent_literal)
        param.promoted = param.promoted or promote
        moved: list[tuple[str, tuple]] = []
        for seg in segments:
            child = node.lit.pop(seg)
            moved.extend((n.template, rel) for rel, n in child.terminals())
            param.absorb(child)
        node._child_template(param, None, parent_literal)
        param.rename(None)
        now = {old: param.walk(rel).template for old, rel in moved}
        # A second fold in the same call moves templates the first one produced: compose.
        folds = [(a, now.get(b, b)) for a, b in self.last_folds] + list(now.items())
        self.last_folds = list(dict.fromkeys(f for f in folds if f[0] != f[1]))
        return param

    def match(self, host: str, path: str) -> tuple[str, dict[str, str]] | None:
        """Without learning: the best known template for path and its params, or None.

        Literal children win over parameters; a parameter accepts any segment."""
        root = self._roots.get(host)
        if root is None:
            return None
        segments = split(path)
        nodes = _match(root, segments, 0)
        if nodes is None:
            return None
        nodes.reverse()
        params = {node.name: seg for node, seg in zip(nodes, segments) if node.kind is not None}
        return (nodes[-1] if nodes else root).template, params


def _collect(v, name: str, depth: int, echoes: dict[str, str], budget: int) -> int:
    """Remember the strings of a JSON value in `echoes` (value -> the field that first carried
    it), at most `budget` of them, `depth` levels deep; a list's items are named by the list's
    name made singular. Returns what is left of the budget."""
    if not depth:
        return budget
    if isinstance(v, dict):
        fields = v.items()
    elif isinstance(v, list) and name:
        item = _item_name(name)
        fields = ((item, x) for x in islice(v, ECHOES_PER_BODY))
    else:
        return budget
    for k, x in fields:
        if budget <= 0:
            break
        if x.__class__ is str:
            if 1 < len(x) <= 128 and _ECHO_VALUE.fullmatch(x) and not x.isdigit():
                budget -= 1
                echoes[x] = echoes.pop(x, k)
        elif isinstance(x, (dict, list)):
            budget = _collect(x, k, depth - 1, echoes, budget)
    return budget


@lru_cache(maxsize=1024)
def _item_name(name: str) -> str:
    return singular(name)


def _match(node: _Node, segments: list[str], i: int) -> list[_Node] | None:
    """Depth-first, literal first: the nodes below `node` on the way to a terminal, reversed."""
    if i == len(segments):
        return [] if node.ends else None
    for child in (node.lit.get(segments[i]), node.param):
        if child is not None:
            found = _match(child, segments, i + 1)
            if found is not None:
                found.append(child)
                return found
    return None
