"""Opening and closing the store: a clean stop leaves a whole `.db` (its `-wal` folded in),
and a store that cannot be opened (locked, read-only, full, not a store) gives one clear line
and leaves nothing behind; a read-only store still serves in mock and replay modes.

Read-only and full disks are real: a read-only bind mount and a small tmpfs, made in a
private mount namespace (`unshare -m`) around the proxy process, so nothing outlives it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, Proc, free_port, no_proxy_env
from mockstore import store as store_mod
from mockstore.cli import cli
from mockstore.model import Model
from mockstore.store import ReadOnlyStoreError, Store, StoreError

PATHS = ["/users/1", "/users/2", "/users/3", "/articles/hello-world", "/users?page=2"]


def copy_db_alone(db: Path, dest: Path) -> Path:
    """The `.db` file only, as someone copying a store would (no -wal, no -shm)."""
    dest.mkdir(exist_ok=True)
    shutil.copy(db, dest / db.name)
    return dest / db.name


def read_copy(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return (conn.execute("select count(*) from exchanges").fetchone()[0],
                conn.execute("select count(*) from endpoints").fetchone()[0])
    finally:
        conn.close()


def traffic(url: str) -> None:
    """Learned exchanges, and answers from the store (worker threads' reader connections)."""
    with no_proxy_env(), httpx.Client(base_url=url, timeout=20) as c:
        for path in PATHS:
            assert c.get(path).status_code == 200
        time.sleep(1.5)  # the model is persisted every second
        for path in PATHS + ["/users/77"]:
            r = c.get(path, headers={"X-Mock-Enabled": "true"})
            assert r.headers.get("x-mockstore-source"), r.headers


def proxy_args(runner: str, port: int, db: Path, confdir: Path, mode: str, upstream: str | None, *extra: str) -> list[str]:
    if runner == "mitmdump":
        args = [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
                "--set", f"mock_db={db}", "--set", f"mock_mode={mode}", "--set", "mock_latency=none",
                "--set", f"confdir={confdir}"]
        args += ["--mode", f"reverse:{upstream}"] if upstream else []
        for e in extra:
            args += ["--set", e]
        return args
    args = [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(db), "--mode", mode,
            "--latency", "none", "--confdir", str(confdir)]
    args += ["--upstream", upstream] if upstream else []
    for e in extra:
        args += ["--set", e]
    return args


# --- a clean stop leaves a whole file --------------------------------------------------------


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_a_clean_stop_leaves_the_db_file_whole(runner, procs, backend, confdir, tmp_path):
    _, upstream = backend()
    db = tmp_path / "store.db"
    port = free_port()
    p = procs(proxy_args(runner, port, db, confdir, "learn", upstream), port)
    traffic(f"http://127.0.0.1:{port}")
    p.stop()
    assert p.proc.returncode == 0, p.output
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0, p.output
    exchanges, endpoints = read_copy(copy_db_alone(db, tmp_path / "copy"))
    assert exchanges == len(PATHS) and endpoints >= 3


def test_two_workers_leave_the_db_file_whole(backend, confdir, tmp_path):
    _, upstream = backend()
    db = tmp_path / "store.db"
    port = free_port()
    log = tmp_path / "workers.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(proxy_args("serve", port, db, confdir, "learn", upstream, ) + ["--workers", "2"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while "workers listening" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            for _ in range(3):  # new connections each time: the kernel spreads them over both
                traffic(f"http://127.0.0.1:{port}")
        finally:
            proc.send_signal(2)
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    exchanges, endpoints = read_copy(copy_db_alone(db, tmp_path / "copy"))
    assert exchanges == 3 * len(PATHS) and endpoints >= 3, log.read_text()


def test_close_closes_every_connection_it_handed_out(tmp_path):
    """Readers on other threads and the recorded index's own connections would keep SQLite
    from folding the WAL back in; after close() the .db alone has every row."""
    path = tmp_path / "s.db"
    store = Store(path)
    store.submit(lambda db: db.execute("create table t (x)"))
    for i in range(500):
        store.insert("insert into t (x) values (?)", (i,))
    assert store.flush()
    index = Model.load(store.db).recorded
    readers = []

    def read():
        readers.append(store.reader())
        readers[-1].execute("select count(*) from t").fetchone()
        index.get(12345)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index.close()
    store.close()
    copy = copy_db_alone(path, tmp_path / "copy")
    assert sqlite3.connect(copy).execute("select count(*) from t").fetchone()[0] == 500
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not left open
        readers[0].execute("select 1")


# --- one clear line, and nothing left behind --------------------------------------------------


def run_cli(args: list[str], cwd: Path, timeout: float = 60, wrap: str | None = None) -> subprocess.CompletedProcess:
    if wrap:
        args = ["unshare", "-m", "sh", "-c", wrap + ' && exec "$@"', "sh", *args]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_clear_line(r: subprocess.CompletedProcess, *words: str) -> str:
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if all(w in line for w in words)]
    assert len(lines) == 1, out
    return lines[0]


def test_a_failed_open_leaves_nothing_in_the_working_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli([MOCKSTORE, "serve", "--db", str(tmp_path / "missing" / "s.db"), "--listen-port", str(free_port())], work)
    one_clear_line(r, "does not exist")
    assert list(work.iterdir()) == []  # no ./certs, no ./mockstore.db


def test_an_option_failing_after_the_store_opened_leaves_no_store(tmp_path, confdir):
    """The store opens, a later option fails: the new store is removed, and mitmproxy's
    undoing of the update opens no ./mockstore.db in its place."""
    work = tmp_path / "work"
    work.mkdir()
    db = tmp_path / "new.db"
    r = run_cli([MOCKSTORE, "serve", "--db", str(db), "--listen-port", str(free_port()), "--confdir", str(confdir),
                 "--set", f"mock_chaos={tmp_path / 'nope.yaml'}"], work)
    one_clear_line(r, "mock_chaos")
    assert not db.exists() and not Path(f"{db}-wal").exists()
    assert list(work.iterdir()) == []


def test_not_a_mockstore_store(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("create table customers (id integer)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a mockstore store: .* other tables \\(customers\\)"):
        Store(other)
    r = CliRunner().invoke(cli, ["endpoints", "--db", str(other)])
    assert r.exit_code != 0 and "not a mockstore store" in r.output and r.exception.__class__ is SystemExit


def test_a_db_copied_without_its_wal_is_named_for_what_it_is(tmp_path):
    """A running store's .db copied alone (its WAL not yet folded in) has no tables."""
    path = tmp_path / "live.db"
    store = Store(path)
    hold = sqlite3.connect(path)  # another reader: the WAL is not folded in while it is open
    hold.execute("select 1").fetchone()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(path, copy / "live.db")
    r = CliRunner().invoke(cli, ["endpoints", "--db", str(copy / "live.db")])
    assert r.exit_code == 1 and "not a mockstore store" in r.output and "-wal" in r.output, r.output
    hold.close()
    store.close()
    # an empty new file is simply a new store
    (tmp_path / "empty.db").touch()
    Store(tmp_path / "empty.db").close()
    assert read_copy(tmp_path / "empty.db") == (0, 0)


def test_locked_at_start_is_one_line(tmp_path, confdir, monkeypatch):
    db = tmp_path / "locked.db"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("begin exclusive")
    try:
        monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_MS", 300, raising=False)
        with pytest.raises(StoreError, match="is locked by another process"):
            Store(db)
        r = run_cli([MOCKSTORE, "serve", "--db", str(db), "--listen-port", str(free_port()), "--confdir", str(confdir)],
                    tmp_path, timeout=90)
        one_clear_line(r, "locked by another process")
    finally:
        holder.rollback()
        holder.close()


# --- read-only stores ---------------------------------------------------------------------


def _mount_works() -> str | None:
    if not shutil.which("unshare"):
        return "no unshare here"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && mount -o remount,ro /mnt"],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot mount in a private namespace: {r.stderr.strip()}"


no_mounts = _mount_works()
needs_mount = pytest.mark.skipif(no_mounts is not None, reason=no_mounts or "")


def read_only(folder: Path) -> str:
    """Shell for `unshare -m`: the folder becomes a read-only mount (root cannot write it)."""
    return f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"


@pytest.fixture
def learned(procs, backend, confdir, tmp_path):
    """A store with PATHS learned, closed cleanly, in a folder of its own."""
    _, upstream = backend()
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "store.db"
    port = free_port()
    p = procs(proxy_args("serve", port, db, confdir, "learn", upstream), port)
    with no_proxy_env(), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
        for path in PATHS:
            assert c.get(path).status_code == 200
    p.stop()
    assert sorted(x.name for x in folder.iterdir()) == ["store.db"], p.output
    return db, upstream


@needs_mount
@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_a_read_only_store_serves_in_mock_and_replay_mode(runner, learned, confdir, tmp_path):
    db, upstream = learned
    for mode in ("mock", "replay"):
        port = free_port()
        args = proxy_args(runner, port, db, confdir, mode, upstream)
        p = Proc(["unshare", "-m", "sh", "-c", read_only(db.parent) + ' && exec "$@"', "sh", *args], port)
        try:
            with no_proxy_env(), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
                for path in PATHS:
                    r = c.get(path)
                    assert r.status_code == 200 and r.headers["x-mockstore-source"] == "recorded", (path, r.headers)
                r = c.get("/users/1", headers={"X-Mock-Enabled": "false"})  # would learn: it must not write
        finally:
            out = p.stop()
        assert p.proc.returncode == 0, out
        assert "Traceback" not in out.split("listening at")[0], out  # opening it said one line
        warnings = [line for line in out.splitlines() if "read-only" in line]
        assert len(warnings) == 1 and "learning nothing" in warnings[0], out
    assert sorted(x.name for x in db.parent.iterdir()) == ["store.db"]


@needs_mount
@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_learning_into_a_read_only_store_is_one_line(runner, learned, confdir, tmp_path):
    db, upstream = learned
    args = proxy_args(runner, free_port(), db, confdir, "learn", upstream)
    r = run_cli(args, tmp_path, wrap=read_only(db.parent))
    line = one_clear_line(r, "read-only")
    assert "mock or replay" in line


@needs_mount
def test_a_new_store_in_a_read_only_folder_is_one_line(tmp_path, confdir):
    folder = tmp_path / "ro"
    folder.mkdir()
    args = proxy_args("serve", free_port(), folder / "new.db", confdir, "mock", None)
    r = run_cli(args, tmp_path, wrap=read_only(folder))
    one_clear_line(r, "cannot create the store")
    assert list(folder.iterdir()) == []


# --- a full disk ----------------------------------------------------------------------------


def small_disk(folder: Path, size: str) -> str:
    return f"mount -t tmpfs -o size={size} tmpfs {folder}"


@needs_mount
def test_a_new_store_on_a_full_disk_is_one_line(tmp_path, confdir):
    folder = tmp_path / "full"
    folder.mkdir()
    args = proxy_args("serve", free_port(), folder / "s.db", confdir, "learn", "http://127.0.0.1:9")
    r = run_cli(args, tmp_path, wrap=small_disk(folder, "64k") + f" && (cat /dev/zero > {folder}/fill || true)")
    one_clear_line(r, "the disk holding the store", "is full")


@needs_mount
def test_a_full_disk_while_running_keeps_traffic_flowing_and_counts(backend, confdir, tmp_path):
    """The disk fills while learning: every request is still answered, and the rows that
    could not be stored are counted: at the first, and in total at the end."""
    _, upstream = backend()
    folder = tmp_path / "small"
    folder.mkdir()
    port = free_port()
    args = proxy_args("serve", port, folder / "s.db", confdir, "learn", upstream)
    p = Proc(["unshare", "-m", "sh", "-c", small_disk(folder, "400k") + ' && exec "$@"', "sh", *args], port)
    sent = 0
    try:
        with no_proxy_env(), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
            for i in range(400):
                r = c.post(f"/items", json={"i": i, "pad": "x" * 4000})  # ~4 KB a row: 400 KB fills
                assert r.status_code in (200, 201), r.text
                sent += 1
    finally:
        out = p.stop()
    assert p.proc.returncode == 0, out
    # said at the first failure (and again if a small write got through in between)
    first = [line for line in out.splitlines() if "rows not stored in" in line]
    assert first and all("traffic keeps flowing" in line for line in first), out
    total = [line for line in out.splitlines() if "rows were not stored in" in line]
    assert len(total) == 1, out
    lost = int(total[0].split("store: ")[1].split()[0])
    assert 100 < lost, out


def test_writes_failing_are_counted_for_as_long_as_they_fail(tmp_path, caplog, monkeypatch):
    """SQLITE_FULL, made with max_page_count: counted at the first, then every
    REPORT_INTERVAL with the total (it never stops counting), then writing resumes."""
    monkeypatch.setattr(store_mod, "REPORT_INTERVAL", 0.0, raising=False)
    store = Store(tmp_path / "s.db")
    store.submit(lambda db: db.execute("create table t (x blob)"))
    assert store.flush()
    pages = store.db.execute("pragma page_count").fetchone()[0]
    store.db.execute(f"pragma max_page_count = {pages + 2}")
    caplog.set_level(logging.ERROR, "mockstore.store")
    for round_ in range(12):
        for _ in range(5):
            store.insert("insert into t (x) values (?)", (b"x" * 20000,))
        assert store.flush()
    assert store.unstored == 60
    counted = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(counted) == 12 and counted[-1].startswith("store: 60 rows not stored so far"), counted
    store.db.execute("pragma max_page_count = 1000000")
    caplog.set_level(logging.WARNING, "mockstore.store")
    store.insert("insert into t (x) values (?)", (b"y",))
    assert store.flush()
    assert "writing to" in caplog.records[-1].getMessage() and "60 rows were not stored" in caplog.records[-1].getMessage()
    assert store.reader().execute("select count(*) from t").fetchone()[0] == 1
    store.close()


def test_read_only_open_and_fallback(tmp_path):
    """readonly=None opens for writing when it can; readonly=True never writes."""
    path = tmp_path / "s.db"
    s = Store(path, readonly=None)
    assert not s.readonly
    s.close()
    ro = Store(path, readonly=True)
    assert ro.readonly and ro.flush()
    ro.insert("insert into exchanges (id) values (?)", (1,))  # counted, not stored
    assert ro.unstored == 1
    ro.close()
    assert read_copy(path) == (0, 0)
    with pytest.raises(ReadOnlyStoreError):
        raise store_mod.store_error(path, sqlite3.OperationalError("attempt to write a readonly database"))


def _open_and_write(path: str, go, results) -> None:
    try:
        go.wait(10)
        s = Store(path)
        s.submit(lambda db: db.execute("insert into meta (key, value) values (?, '1')", [f"opened.{os.getpid()}"]))
        s.close()
        results.put("ok")
    except BaseException as e:  # the parent says what failed
        results.put(f"{type(e).__name__}: {e}")


def test_two_processes_making_one_new_store_at_once(tmp_path, caplog):
    """Two proxies (or a proxy and a command) started together on a store that does not exist
    yet: both open it, and the store keeps what each wrote. The second's switch to WAL failed
    at once with "locked", and as it had found no file it removed the store the first was
    writing into (in about one try in three)."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    for trial in range(20):
        path = str(tmp_path / f"new-{trial}.db")
        go, results = fork.Event(), fork.Queue()
        procs = [fork.Process(target=_open_and_write, args=(path, go, results)) for _ in range(2)]
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(60)
        assert [results.get(timeout=5) for _ in procs] == ["ok", "ok"], f"trial {trial}"
        with sqlite3.connect(path) as conn:
            opened = conn.execute("select count(*) from meta where key like 'opened.%'").fetchone()[0]
        assert opened == 2, f"trial {trial}: what one process wrote is gone"
