"""A local cache of remote shard objects, shared by every rank and worker on a machine (`data.cache_dir`).

    cache = open_cache("/scratch/genaug-cache", limit="500G")   # None (one warning line) when it cannot be used
    data, hit = cache.fetch(RemotePath("s3://b/set/train/000003.tar"), sha256=stats["sha256"])
    raw, hit = cache.fetch(RemotePath("s3://b/set/train/000003.json"))   # no checksum known: keyed by its ETag

One job: get the bytes of one remote object through the cache. An entry's key is sha256(URL + the object's
version): the sha256 its shard stats recorded for a tar, the store's ETag (and size) for an object without a known
checksum (the stats themselves, revalidated by one HEAD). Two sets, or two versions of a shard, never share an
entry. Each object is downloaded once per machine: a miss takes an exclusive file lock (fcntl.flock, one of
4,096 striped lock files, so the lock files never need deleting), looks again, downloads, writes a temp file and
renames it into place. Nothing but a renamed, whole file is ever an entry, and every hit is checked before use
(against the sha256 it is keyed by, or the sha256 header stored with an ETag-keyed entry): a file damaged on disk
is dropped and fetched again, with a warning. Bytes from the store that do not match the expected checksum are
returned to the caller (which decides, as without a cache) but never cached.

Least-recently-used eviction: a hit touches the entry's mtime; after each fill, the process that gets the
eviction lock deletes the oldest entries until the entries total at most `limit` bytes (and removes temp files of
dead processes). An object larger than the limit is not cached. Concurrent fills may exceed the limit for a moment.

A cache that cannot be used (read-only, full, owned by another user, no POSIX file locks) is one warning line
naming it and the fix; the caller goes on without it. genaug.core.locks holds one-holder-or-error locks; the cache
needs waiting and striped locks, hence its own small lock code.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.shards.storage import RemotePath
from genaug.shards.writer import _fault

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: the folder of this layout inside the cache dir (a new layout gets a new folder: old entries are never misread)
LAYOUT = "genaug-shards-v1"
LOCK_STRIPES = 4096
_HEADER = 65  # an ETag-keyed entry starts with the sha256 (hex) of its bytes and a newline
#: help texts of every command's --cache-dir and --cache-limit
CACHE_DIR_HELP = (
    "Local cache of remote (s3://, gs://, https://) shards, shared by every rank and worker of this machine: each "
    "shard crosses the network once; later epochs and runs read it here (recipe key data.cache_dir)."
)
CACHE_LIMIT_HELP = "Size limit of --cache-dir, e.g. 500G or 20M (least recently used shards evicted; default none)."
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_TMP = re.compile(r"\.tmp-(?P<host>[^-]+)-(?P<pid>\d+)-\d+$")
_STALE_TMP_S = 3600.0  # a temp file this old is a leftover whatever its writer (another host on a shared disk)
_DISABLED: dict[str, str] = {}  # cache roots this process stopped using (root -> why), warned once each


def parse_size(text: str | int | float | None, what: str = "--cache-limit") -> int | None:
    """Bytes of a size such as `500G`, `20M`, `1.5T` or `1048576` (binary units: 1G = 2**30); None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise GenaugError(f"{what} must be a positive size such as 500G or 20M, got {text!r}")
        return int(text)
    m = _SIZE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise GenaugError(f"{what} must be a positive size such as 500G, 20M or 1048576 (bytes), got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _why(e: OSError) -> str:
    """The user's fix for an OSError of the cache dir."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"it is full ({e.strerror or e}): free space on it, lower --cache-limit or choose another --cache-dir"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"it is not writable ({e.strerror or e}): make it writable or choose another --cache-dir"
    return f"it cannot be used ({e.strerror or e}): choose another --cache-dir"


def _warn_off(root: Path, why: str) -> None:
    """Stop using the cache at `root` in this process, with one warning line (once per process and root)."""
    if str(root) in _DISABLED:
        return
    _DISABLED[str(root)] = why
    warnings.warn(f"genaug: shard cache {root}: {why}; going on without the cache", stacklevel=3)


@dataclass(frozen=True)
class ShardCache:
    """A cache folder and its size limit in bytes (None: unlimited); picklable, so it travels to loader workers."""

    root: Path
    limit: int | None = None
    lock_timeout: float = 600.0  # seconds a miss waits for another process filling the same entry

    @property
    def usable(self) -> bool:
        """False once this process stopped using the cache (a failure, warned once)."""
        return str(self.root) not in _DISABLED

    @property
    def base(self) -> Path:
        """The folder of this layout's entries and locks."""
        return self.root / LAYOUT

    def entry(self, key: str) -> Path:
        """The file of the entry with key `key` (64 hex digits)."""
        return self.base / "objects" / key[:2] / key

    def key(self, url: str, version: str) -> str:
        """The key of object `url` at `version` (its sha256, or its ETag and size)."""
        return hashlib.sha256(f"{url}\0{version}".encode()).hexdigest()

    # -- the one job -----------------------------------------------------------------------------------------------
    def fetch(self, path: RemotePath, sha256: str | None = None) -> tuple[bytes, bool]:
        """(the bytes of `path`, whether they came from the cache); with `sha256` checked against it."""
        if not self.usable:
            return path.read_bytes(), False
        if sha256:
            key, want = self.key(path.url, f"sha256:{sha256}"), sha256
        else:
            tag = _version_tag(path)
            if tag is None:  # the store gives no version: nothing safe to key an entry by
                return path.read_bytes(), False
            key, want = self.key(path.url, tag), None
        file = self.entry(key)
        data = self._read(file, path, want, warn=True)
        if data is not None:
            return data, True
        try:
            fd = self._lock(key)
        except OSError as e:
            _warn_off(self.root, _why(e))
            return path.read_bytes(), False
        if fd is None:
            warnings.warn(
                f"genaug: shard cache {self.root}: the lock of {path} was held for more than {self.lock_timeout:g} s "
                "(another process or user): fetching it directly; give each user a --cache-dir of their own",
                stacklevel=2,
            )
            return path.read_bytes(), False
        try:
            data = self._read(file, path, want, warn=False)  # filled by another process while this one waited
            if data is not None:
                return data, True
            data = path.read_bytes()
            filled = self._store(file, data, want)
        finally:
            _unlock(fd)
        if filled:
            self._evict()
        return data, False

    # -- entries ---------------------------------------------------------------------------------------------------
    def _read(self, file: Path, path: RemotePath, want: str | None, warn: bool) -> bytes | None:
        """The checked bytes of an entry, or None (absent, or damaged: removed, with a warning when `warn`)."""
        try:
            with open(file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            _warn_off(self.root, _why(e))
            return None
        if want is None:
            head, data = raw[:_HEADER], raw[_HEADER:]
            ok = len(head) == _HEADER and head[64:] == b"\n" and hashlib.sha256(data).hexdigest().encode() == head[:64]
        else:
            data = raw
            ok = hashlib.sha256(data).hexdigest() == want
        if not ok:
            if warn:
                warnings.warn(
                    f"genaug: shard cache {self.root}: the cached copy of {path} ({file.name}) is damaged "
                    "(checksum mismatch): fetching it again",
                    stacklevel=3,
                )
            try:
                file.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                _warn_off(self.root, _why(e))
            return None
        _touch(file)
        return data

    def _store(self, file: Path, data: bytes, want: str | None) -> bool:
        """Write an entry by temp file + rename; False when it is not cached (bytes not as expected, too big)."""
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            return False  # the store's bytes are not the recorded ones: the caller sees it, the cache keeps nothing
        body = data if want is not None else hashlib.sha256(data).hexdigest().encode() + b"\n" + data
        if self.limit is not None and len(body) > self.limit:
            return False
        tmp = file.with_name(
            f"{file.name}.tmp-{socket.gethostname().replace('-', '_')}-{os.getpid()}-{threading.get_ident()}"
        )
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                half = len(body) // 2
                f.write(body[:half])
                f.flush()
                _fault("cache-fill", 0)  # tests: GENAUG_FAULT=cache-fill kills this process with the entry half written
                f.write(body[half:])
            os.replace(tmp, file)
            _touch(file)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            _warn_off(self.root, _why(e))
            return False
        return True

    def usage(self) -> tuple[int, list[tuple[float, int, str]]]:
        """(bytes of all entries, [(mtime, size, path)] of each); removes temp files of dead writers on the way."""
        total, entries = 0, []
        objects = self.base / "objects"
        try:
            subs = list(os.scandir(objects))
        except FileNotFoundError:
            return 0, []
        now = time.time()
        for sub in subs:
            try:
                items = list(os.scandir(sub.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in items:
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                m = _TMP.search(e.name)
                if m:
                    if now - st.st_mtime > _STALE_TMP_S or _dead(m.group("host"), int(m.group("pid"))):
                        _unlink_quiet(e.path)
                    continue
                total += st.st_size
                entries.append((st.st_mtime_ns / 1e9, st.st_size, e.path))
        return total, entries

    def _evict(self) -> None:
        """Delete least recently used entries until the cache holds at most `limit` bytes (one evictor at a time)."""
        if self.limit is None or fcntl is None:
            return
        try:
            fd = os.open(self.base / "locks" / "evict.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return  # another process is evicting
            total, entries = self.usage()
            for _, size, p in sorted(entries):
                if total <= self.limit:
                    break
                if _unlink_quiet(p):
                    total -= size
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- locks -----------------------------------------------------------------------------------------------------
    def lock_file(self, key: str) -> Path:
        """The lock file of `key`'s stripe (one of LOCK_STRIPES, never deleted)."""
        return self.base / "locks" / f"{int(key[:8], 16) % LOCK_STRIPES:04d}.lock"

    def _lock(self, key: str) -> int | None:
        """An fd holding the lock of `key`'s stripe, or None after lock_timeout seconds; OSError when unusable."""
        fd = os.open(self.lock_file(key), os.O_RDWR | os.O_CREAT, 0o666)
        deadline, pause = time.monotonic() + self.lock_timeout, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(pause)
                pause = min(0.25, pause * 2)
            except OSError:
                os.close(fd)
                raise


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def _dead(host: str, pid: int) -> bool:
    """True when `pid` on `host` is a process of this host that no longer runs."""
    if host != socket.gethostname().replace("-", "_"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _version_tag(path: RemotePath) -> str | None:
    """The store's version of an object (ETag, generation or md5 with its size), by one HEAD; None if it has none."""
    with _remote(path):
        path.fs.invalidate_cache(path.key)  # a listing cached earlier in this process may be stale
        info = path.fs.info(path.key)
    for k in ("ETag", "etag", "generation", "md5Hash", "VersionId"):
        if info.get(k):
            return f"{k}:{info[k]}:{info.get('size')}"
    return None


def _remote(path: RemotePath):
    from genaug.shards.storage import remote_errors

    return remote_errors(path.url)


def open_cache(root: str | os.PathLike | None, limit: str | int | None = None) -> ShardCache | None:
    """The shard cache at `root` after checking it can be used; None (no cache) with one warning line when not."""
    if root is None or str(root) == "":
        return None
    size = parse_size(limit)
    root = Path(root).expanduser().absolute()
    if fcntl is None:  # pragma: no cover - Windows
        warnings.warn(f"genaug: shard cache {root}: it needs POSIX file locks; going on without it", stacklevel=2)
        return None
    cache = ShardCache(root, size)
    base = cache.base
    try:
        for sub in ("objects", "locks"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        owner = base.stat().st_uid
        if owner != os.geteuid():
            warnings.warn(
                f"genaug: shard cache {root}: it belongs to another user (uid {owner}): give each user a --cache-dir "
                "of their own; going on without the cache",
                stacklevel=2,
            )
            return None
        tag = base / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# genaug shard cache: safe to delete\n")
        probe = base / "locks" / f"probe.tmp-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
        os.replace(probe, base / "locks" / f"probe-{os.getpid()}")
        os.unlink(base / "locks" / f"probe-{os.getpid()}")
        fd = cache._lock("0" * 64)
        if fd is not None:
            _unlock(fd)
    except OSError as e:
        warnings.warn(f"genaug: shard cache {root}: {_why(e)}; going on without the cache", stacklevel=2)
        return None
    if not cache.usable:
        _DISABLED.pop(str(root), None)  # checked again: a later run in this process may use it
    return cache


#: the variables that carry --cache-dir/--cache-limit of eval and inspect to this process's readers and children
ENV_DIR, ENV_LIMIT = "GENAUG_CACHE_DIR", "GENAUG_CACHE_LIMIT"
_ENV_CACHES: dict[tuple, ShardCache | None] = {}


def set_cache_env(root: str | os.PathLike | None, limit: str | int | None = None) -> None:
    """Make `root` (and its `limit`) the shard cache of this process's readers and of its children (None: none)."""
    from genaug.core.flags import output_folder

    parse_size(limit)  # a bad size is an error now, naming the flag
    output_folder(root, "--cache-dir")
    for name, value in ((ENV_DIR, root), (ENV_LIMIT, limit)):
        if value is None or str(value) == "":
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)


def env_cache() -> ShardCache | None:
    """The shard cache set by set_cache_env (checked once per process), or None."""
    key = (os.getpid(), os.environ.get(ENV_DIR), os.environ.get(ENV_LIMIT))
    if key not in _ENV_CACHES:
        _ENV_CACHES[key] = open_cache(key[1], key[2] or None) if key[1] else None
    return _ENV_CACHES[key]


_last_touch = [0]
_touch_lock = threading.Lock()


def _touch(file: Path) -> None:
    """Set an entry's mtime to now, in nanoseconds and strictly later than this process's previous touch.

    The kernel stamps writes with a coarse clock (one tick is 1-10 ms), so entries filled or hit within one tick
    would tie and the eviction order among them would be arbitrary; an explicit, increasing time keeps it LRU.
    """
    with _touch_lock:
        now = max(time.time_ns(), _last_touch[0] + 1)
        _last_touch[0] = now
    with contextlib.suppress(OSError):  # a touch that fails only leaves the entry older in the LRU order
        os.utime(file, ns=(now, now))
