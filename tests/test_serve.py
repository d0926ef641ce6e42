"""The lean master of `mockstore serve`, in-process: what it changes of mitmproxy's own
machinery does what mitmproxy's does, and no more. (End to end, through a real `serve`
process: test_workers.py, test_e2e.py.)"""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from mitmproxy import exceptions, hooks, master, options

from mockstore.serve import HandlerIndex, log_line_by_line


class Recorder:
    def __init__(self, name: str, seen: list, fail: bool = False, halt: bool = False):
        self.name, self.seen, self.fail, self.halt = name, seen, fail, halt

    def running(self):
        self.seen.append(self.name)
        if self.fail:
            raise ValueError(f"{self.name} broke")
        if self.halt:
            raise exceptions.AddonHalt()


class AsyncRecorder(Recorder):
    async def running(self):
        await asyncio.sleep(0)
        self.seen.append(self.name)


class Deaf:  # no handler for the event: never visited
    name = "deaf"


def test_handler_index_offers_events_like_mitmproxy(caplog):
    """In chain order, sync and async; an addon added or removed later is seen; an error in
    one handler is logged and the others still run; AddonHalt stops the event."""

    async def run():
        m = master.Master(options.Options())
        assert HandlerIndex.adopt(m.addons)  # fails on a mitmproxy whose manager differs: look again
        seen: list[str] = []
        a, b, c = Recorder("a", seen), AsyncRecorder("b", seen), Recorder("c", seen, fail=True)
        m.addons.add(a, Deaf(), b)
        await m.addons.trigger_event(hooks.RunningHook())
        assert seen == ["a", "b"]
        m.addons.add(c, Recorder("d", seen))
        seen.clear()
        with caplog.at_level(logging.ERROR):
            await m.addons.trigger_event(hooks.RunningHook())
        assert seen == ["a", "b", "c", "d"]
        assert "Addon error: c broke" in caplog.text
        m.addons.remove(a)
        m.addons.add(Recorder("halt", seen, halt=True), Recorder("after", seen))
        seen.clear()
        await m.addons.trigger_event(hooks.RunningHook())
        assert seen == ["b", "c", "d", "halt"]

    asyncio.run(run())


def test_the_lean_master_skips_mitmproxys_debug_type_checks(monkeypatch):
    """`serve` builds requests and responses without mitmproxy's per-field type checks, as
    `python -O` would; this fails if a mitmproxy release moves them (then re-measure)."""
    from mitmproxy import http

    from mockstore.serve import skip_type_checks

    def response(status):
        return http.Response(b"HTTP/1.1", status, b"OK", http.Headers(), b"", None, 0.0, None)

    with pytest.raises(TypeError):
        response("200")  # a str where an int belongs: mitmproxy's check says so
    monkeypatch.setattr(http.MessageData, "__post_init__", http.MessageData.__post_init__)  # undone after
    skip_type_checks()
    assert response("200").data.status_code == "200"  # unchecked


class Writes(io.RawIOBase):
    """A raw stream that keeps each write it is given."""

    def __init__(self):
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.writes.append(bytes(b))
        return len(b)


@pytest.mark.parametrize("how", ["block-buffered", "unbuffered"])
def test_the_log_is_one_write_a_line(how):
    """What several workers sharing one stdout need: a whole line in one write, at once. A
    file gets block buffering (8 KB writes that end mid-line); PYTHONUNBUFFERED gives a
    printed line two writes (its text, its newline)."""
    raw = Writes()
    if how == "block-buffered":
        stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    else:  # as python -u makes stdout
        stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    log_line_by_line(stream)
    print("[18:37:07.185] mockstore drift: GET /users/{id}", file=stream)
    print("second", file=stream)
    assert raw.writes == [b"[18:37:07.185] mockstore drift: GET /users/{id}\n", b"second\n"]
