"""Bringing the learned model up to date with the recorded exchanges.

Each persist records, per worker slot, the last exchange id the model had counted
(`counted.SLOT` in `meta`, see mockstore.sync). A process killed between two persists leaves
rows after that mark, stored but not counted: at most one persist interval's worth. Opening
the store learns them again (`catch_up`); `mockstore rebuild` learns every row again from
nothing (`rebuild`), for a model damaged, or written by a mockstore before the mark.
"""

from __future__ import annotations

import logging

from . import recordings, sync
from .learn import Learner
from .model import Model
from .store import Store

log = logging.getLogger("mockstore.rebuild")


def catch_up(store: Store, model: Model, slot: int) -> int:
    """Learn the rows of `slot` that the stored model has not counted; how many."""
    db = store.reader()
    mark = sync.counted(db, slot)
    n = _learn_rows(model, recordings.exchanges(db, after=mark, slot=slot))
    model.ids.advance(mark)
    if n:
        log.warning("mockstore: %d recorded exchanges were not counted in the model (the last run "
                    "stopped without persisting them): learned them again", n)
    return n


def rebuild(store: Store) -> tuple[int, int]:
    """Learn the whole model again from the recorded exchanges: how many there were, and
    the endpoints they made. The proxy must not be running on the store meanwhile."""
    store.flush()

    store.submit(sync.forget)
    store.flush()
    model = Model.load(store.reader())
    n = _learn_rows(model, recordings.exchanges(store.reader()))
    last = recordings.last_ids(store.reader())
    store.submit(model.persist())
    for slot, top in last.items():
        store.submit(lambda db, s=slot, t=top: sync.mark_counted(db, s, t))
    store.flush()
    return n, len(model.endpoints)


def _learn_rows(model: Model, rows) -> int:
    learner = Learner(model, None, redacting=False)  # rows are stored redacted already
    n = 0
    for exchange_id, ex in rows:
        try:
            learner.learn(ex, stored_as=exchange_id)
        except Exception as e:  # one damaged row must not stop the rest
            log.warning("mockstore: recorded exchange %d not learned: %s", exchange_id, e)
            continue
        n += 1
    return n
