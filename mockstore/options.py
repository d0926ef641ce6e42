"""mockstore's own options, and reading them from text, with messages that name the option.

mitmproxy checks an option's `choices` only on its own command-line flags, not for `--set`
or for `options.update`, and its text parsing says "Not an integer: abc" without saying which
option. So the addon declares its options from here and checks every value with these pure
functions, which raise ValueError with the option's name and what it accepts; the addon turns
that into mitmproxy's OptionsError, and `mockstore serve` into a one-line error.
Nothing here imports mitmproxy.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

MODES = ("learn", "mock", "failover", "replay")
LATENCIES = ("learned", "none")
# The store's id clock has 16 slots (mockstore.model.IdClock): 0-14 are proxies' (workers),
# 15 is `mockstore import`'s, so an import beside a running proxy never shares its ids or its
# counted mark (mockstore.sync).
IMPORT_SLOT = 15
MAX_WORKER = IMPORT_SLOT - 1

# name, type, default, help, choices
OPTIONS: list[tuple[str, Any, Any, str, tuple[str, ...] | None]] = [
    ("mock_mode", str, "learn", "learn | mock | failover | replay.", MODES),
    ("mock_db", str, "./mockstore.db", "The SQLite store.", None),
    ("mock_seed", int, 0, "Seed for synthesis, simulated latency and chaos.", None),
    ("mock_latency", str, "learned", "Simulated latency of mocked answers: learned | none.", LATENCIES),
    ("mock_redact", bool, True, "Redact secrets (Authorization, cookies, API keys, token parameters) before storing.", None),
    ("mock_max_body", int, 1024 * 1024, "Bytes of a body learned and recorded; larger bodies pass through unlearned.", None),
    ("mock_upstream_timeout", str, "10", "Seconds to wait for the real API in failover mode before answering from mockstore.", None),
    ("mock_worker", int, 0, "Worker slot (0-14) when several proxy processes share one store (one held by another process: the first free one).", None),
    ("mock_session_gap", str, "30", "Seconds without a request after which recorded sequences replay from their start again (0: never).", None),
]
OWN = frozenset(name for name, *_ in OPTIONS)
CHOICES = {name: choices for name, _, _, _, choices in OPTIONS if choices}


def parse_texts(name: str, typespec: Any, texts: list[str]) -> Any:
    """What `--set NAME=VALUE` gave for one option (`--set NAME` gives nothing, a true bool),
    as the option's type."""
    if len(texts) > 1:
        raise ValueError(f"{name}: set {len(texts)} times ({', '.join(map(repr, texts))}); give one value")
    return parse(name, typespec, texts[0] if texts else None)


def parse(name: str, typespec: Any, text: str | None) -> Any:
    """A `--set NAME=VALUE` text as the option's type, as mitmproxy would read it, but saying
    which option a bad value is for."""
    if text is None and typespec is not bool:
        if typespec in (Optional[str], Optional[int]):
            return None
        raise ValueError(f"{name}: needs a value: --set {name}=VALUE")
    if typespec is bool:
        if text in (None, "", "true"):
            return True
        if text == "false":
            return False
        raise ValueError(f"{name}: {text!r} is not true or false")
    if typespec in (int, Optional[int]):
        if text == "" and typespec is not int:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a whole number") from None
    return text


def check(name: str, value: Any) -> Any:
    """The value of one of mockstore's own options, checked (its choices, its range), as it
    is used: mock_upstream_timeout as a float."""
    choices = CHOICES.get(name)
    if choices is not None and value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    if name == "mock_max_body" and value <= 0:
        raise ValueError(f"mock_max_body must be a positive number of bytes, not {value}")
    if name == "mock_worker" and not 0 <= value <= MAX_WORKER:
        raise ValueError(f"mock_worker must be 0-{MAX_WORKER}, not {value}")
    if name == "mock_upstream_timeout":
        return positive_seconds(name, value)
    if name == "mock_session_gap":
        return session_gap(name, value)
    return value


def session_gap(name: str, text: Any) -> float:
    """Seconds, 0 or more (0 turns the idle rewind off)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a number of seconds, 0 or more (0: never), not {text!r}")
    return value


def positive_seconds(name: str, text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


def upstream_url(url: str) -> str:
    """The real API's URL for a reverse proxy: http or https, and a host."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upstream: {url!r} is not a URL of the real API: it needs http:// or https:// "
                         f"and a host, e.g. https://api.example.com")
    return url.strip()
