"""What file leases and object leases share: names, limits, the timeout check, pids and the age rule."""

from __future__ import annotations

import math
import os
import socket

from genaug.core.errors import GenaugError

LEASE_DIR = ".leases"
#: a lease holds a small JSON record; anything bigger is malformed
MAX_LEASE_BYTES = 64 * 1024
MAX_PID = 2**31


def host() -> str:
    """This machine's name, as lease owners record it."""
    return socket.gethostname()


def check_lease_timeout(timeout: object, flag: str = "--lease-timeout") -> float:
    """Return `timeout` as float if it is a finite positive number of seconds, else raise a one-line GenaugError."""
    try:
        value = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        value = float("nan")
    if isinstance(timeout, bool) or not math.isfinite(value) or value <= 0:
        raise GenaugError(
            f"{flag} must be a positive number of seconds (e.g. 300), got {timeout!r}: it is how long a shard's "
            "lease may go without a heartbeat before another process takes the shard over"
        )
    return value


def valid_pid(pid: object) -> bool:
    """True for a pid os.kill can check (not a bool, not a process group, not overflowing)."""
    # bool is an int; 0 and negatives address process groups in kill(); above 2**31 os.kill overflows
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < MAX_PID


def pid_alive(pid: int) -> bool:
    """False only when `pid` is a valid pid with no process on this host."""
    if not valid_pid(pid):
        return True  # not a pid we can check: only the timeout decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def suspect_age(age: float) -> float:
    """A lease's age for the staleness test: a heartbeat time in the future counts by its distance from now.

    Clamping it to 0 would keep a lease planted (or written under a clock far ahead) alive forever; taken as its
    distance, a small skew between hosts still reads as fresh, and one beyond the timeout is stale."""
    return abs(age) if math.isfinite(age) else math.inf


def dead_here(doc: dict) -> bool:
    """True when a lease's owner is a process of this host that no longer runs."""
    return doc.get("host") == host() and valid_pid(doc.get("pid")) and not pid_alive(doc["pid"])
