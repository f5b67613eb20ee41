"""How a flow survives failures: a crash of its process, and a database that goes away.

A crash. With a recovery directory, Bytewax snapshots each stateful step
(the detect step's frames in flight, the windows) every snapshot interval
into SQLite partitions there, and a restarted flow resumes from the last
snapshot: frames that were in flight are submitted again. Sources resume
from their own durable position (Redis consumer-group pending entries, an
MQTT persistent session, the SQL queue's leases), and the sinks
are idempotent (ids derive from the frame id), so a frame seen twice writes
the same rows twice, not two rows. The partitions must exist before the
first run; :func:`recovery_config` creates them once (under a file lock, as
several processes of a cluster may start at the same time), like
``python -m bytewax.recovery DIR COUNT`` does.

A lost database. A restart or failover of PostgreSQL breaks every pooled
connection; :func:`retry_lost_connection` runs a sink's write again with
exponential backoff until the database answers (``pool_pre_ping`` hands out
fresh connections once it does) instead of ending the flow, and gives up
only after ``give_up_after`` seconds. Other errors (a constraint, bad SQL)
are raised at once: retrying them cannot help.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir

from detectflow.store.reconnect import is_lost_connection, retry_lost_connection

__all__ = [
    "is_lost_connection",
    "recovery_config",
    "recovery_partitions",
    "retry_lost_connection",
]

log = logging.getLogger(__name__)

# Bytewax's extension is untyped; give its functions their signatures.
_init_db_dir: Callable[[Path, int], None] = init_db_dir
_recovery_config: Callable[[Path], Any] = RecoveryConfig
_PARTITION_GLOB = "part-*.sqlite3"


def recovery_partitions(directory: Path) -> int:
    """How many recovery partitions ``directory`` holds (0 when it is new)."""
    return len(list(directory.glob(_PARTITION_GLOB))) if directory.is_dir() else 0


def recovery_config(directory: Path, partitions: int) -> Any:
    """A Bytewax ``RecoveryConfig`` on ``directory``, creating ``partitions`` there if new.

    An existing directory keeps the partitions it has: Bytewax resumes from
    them whatever the number of workers now (it must not be re-created, or
    the snapshots are gone).
    """
    if partitions < 1:
        raise ValueError("recovery needs at least one partition")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".init.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if recovery_partitions(directory) == 0:
            _init_db_dir(directory, partitions)
            log.info("created %d recovery partition(s) in %s", partitions, directory)
    return _recovery_config(directory)
