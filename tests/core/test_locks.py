"""Folder locks: one holder at a time, the holder named in a one-line error, released on exit and on SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from genaug.core.errors import GenaugError
from genaug.core.locks import LOCK_NAME, folder_lock, read_holder

HOLD = """
import sys, time
from genaug.core.locks import folder_lock
with folder_lock(sys.argv[1], what="training run"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold_in_child(folder):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    run = tmp_path / "run"
    with folder_lock(run, what="training run") as path:
        assert path == run / LOCK_NAME and path.is_file()
        holder = read_holder(run)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(GenaugError) as e:  # a second holder, even in the same process
            with folder_lock(run, what="training run"):
                pass
        msg = str(e.value)
        assert "\n" not in msg and str(run) in msg and "training run" in msg and f"pid {os.getpid()}" in msg
    with folder_lock(run):  # released on exit: free again
        pass


def test_lock_held_by_another_process_then_freed_by_its_death(tmp_path):
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(GenaugError, match=f"pid {child.pid} on host"):
            with folder_lock(tmp_path, what="training run"):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with folder_lock(tmp_path):  # the kernel dropped the lock of the killed holder
        pass


def test_lock_released_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path):
            raise RuntimeError("boom")
    with folder_lock(tmp_path):
        pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_hostile_lock_paths_are_one_line_errors(tmp_path):
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / LOCK_NAME)  # must not block
    t = time.perf_counter()
    with pytest.raises(GenaugError, match="not a regular file"):
        with folder_lock(fifo):
            pass
    assert time.perf_counter() - t < 5
    link = tmp_path / "link"
    link.mkdir()
    (link / LOCK_NAME).symlink_to(tmp_path / "elsewhere")  # never followed
    with pytest.raises(GenaugError, match="lock file"):
        with folder_lock(link):
            pass
    assert not (tmp_path / "elsewhere").exists()
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(GenaugError, match="cannot create"):
        with folder_lock(blocked / "sub"):
            pass
