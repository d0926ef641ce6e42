"""OffLoop: blocking calls on one thread, their results back to the loop in batches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mockstore.offloop import OffLoop


def test_results_errors_and_order_come_back_to_their_callers():
    off = OffLoop("test")
    ran: list[int] = []

    def work(n):
        ran.append(n)
        if n == 3:
            raise ValueError("three")
        return n * 10, threading.current_thread().name

    async def main():
        return await asyncio.gather(*(off.run(work, n) for n in range(6)), return_exceptions=True)

    results = asyncio.run(main())
    off.close()
    assert ran == list(range(6))  # one at a time, in the order asked
    assert [r if isinstance(r, ValueError) else r[0] for r in results][:3] == [0, 10, 20]
    assert isinstance(results[3], ValueError) and str(results[3]) == "three"
    assert {r[1] for r in results if not isinstance(r, Exception)} == {"test"}  # off the loop's thread


def test_calls_queued_while_one_runs_come_back_in_one_batch(monkeypatch):
    from mockstore import offloop

    batches: list[int] = []
    settle = offloop._settle
    monkeypatch.setattr(offloop, "_settle", lambda outcomes: (batches.append(len(outcomes)), settle(outcomes)))
    off = OffLoop("test")

    async def main():
        first = asyncio.ensure_future(off.run(time.sleep, 0.2))  # holds the thread
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(off.run(pow, 2, n)) for n in range(20)]
        await first
        return await asyncio.gather(*rest)

    assert asyncio.run(main()) == [2**n for n in range(20)]
    off.close()
    assert batches == [1, 20]


def test_a_cancelled_caller_does_not_stop_the_others():
    off = OffLoop("test")

    async def main():
        slow = asyncio.ensure_future(off.run(time.sleep, 0.1))
        other = asyncio.ensure_future(off.run(len, "four"))
        await asyncio.sleep(0.01)
        slow.cancel()
        return await other

    assert asyncio.run(main()) == 4
    off.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(off.run(len, "x"))
