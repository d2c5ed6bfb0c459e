"""One mutual-exclusion lock per sweep store, across processes and machines.

Optuna's storage makes each single change atomic (a trial goes WAITING -> RUNNING for one worker
only), but not a read followed by writes: "enqueue this run unless one of its trials is live" and
"fail this stale trial, then queue its retry" are several storage calls, and two workers doing
them at once would give one run two live trials. Those sequences run under this lock
(latentmix.sweep.store). Optuna has no cross-process lock of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from pathlib import Path
from typing import Optional


class StoreLock:
    """One mutual-exclusion lock per store, across processes and machines.

    SQLite: ``flock`` on ``DB.lock`` beside the file. PostgreSQL: ``pg_advisory_lock`` on a private
    connection. MySQL: ``GET_LOCK``. The OS/server releases each when its holder dies, so a killed
    worker never leaves the sweep locked. Other back-ends get an in-process lock and a warning.
    """

    KEY = int.from_bytes(hashlib.sha256(b"latentmix.sweep").digest()[:8], "big", signed=True)

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        self.url = url
        try:
            parsed = make_url(url)
        except Exception:  # noqa: BLE001 - sqlalchemy.exc.ArgumentError: not a URL at all
            from latentmix.errors import ConfigError

            raise ConfigError(f"--storage {url!r} is not a database URL; give sqlite:///PATH/TO/FILE.db or "
                              "postgresql://USER@HOST/DATABASE") from None
        self.backend = parsed.get_backend_name()
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._handle = None
        self._connection = None
        self._engine = None
        self.path: Optional[Path] = None
        if self.backend == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file::memory"):
                self.path = Path(database + ".lock")
        elif self.backend not in ("postgresql", "mysql"):
            warnings.warn(f"no cross-process lock for {self.backend} stores; run one worker per store", stacklevel=2)

    def _engine_for_lock(self):
        if self._engine is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            self._engine = sqlalchemy.create_engine(self.url, poolclass=NullPool)
        return self._engine

    def acquire(self) -> None:
        import sqlalchemy

        self._thread_lock.acquire()
        self._depth += 1
        if self._depth > 1:
            return
        try:
            if self.path is not None and _fcntl() is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a+")
                _fcntl().flock(self._handle.fileno(), _fcntl().LOCK_EX)
            elif self.backend == "postgresql":
                self._connection = self._engine_for_lock().connect()
                self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.KEY})
                self._connection.commit()
            elif self.backend == "mysql":
                self._connection = self._engine_for_lock().connect()
                self._connection.execute(sqlalchemy.text("SELECT GET_LOCK('latentmix.sweep', -1)"))
        except BaseException:
            self._depth -= 1
            self._close()
            self._thread_lock.release()
            raise

    def release(self) -> None:
        import sqlalchemy

        self._depth -= 1
        try:
            if self._depth == 0:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        if self.backend == "postgresql":
                            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.KEY})
                        else:
                            self._connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK('latentmix.sweep')"))
                self._close()
        finally:
            self._thread_lock.release()

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(Exception):
                _fcntl().flock(self._handle.fileno(), _fcntl().LOCK_UN)
            self._handle.close()
            self._handle = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows: one worker process per SQLite store
        return None
    return fcntl

