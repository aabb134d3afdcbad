"""Where shard bytes live: local paths (pathlib, fsync + rename) or object-store URLs (fsspec: s3://, gs://, https://).

Every shard read and write goes through this module. A local path stays a `pathlib.Path` and behaves exactly as
before (same bytes, temp file + fsync + rename). A URL becomes a `RemotePath`, a small pathlib-like handle over an
fsspec filesystem, with the subset of the Path API the shard code uses (`/`, name, parent, exists, is_dir, iterdir,
glob, read_bytes, stat, unlink, open). On an object store a PUT is atomic, so `put_atomic` is one PUT.

Credentials and endpoints come from the standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws; GOOGLE_APPLICATION_CREDENTIALS, STORAGE_EMULATOR_HOST and
gcloud's defaults); `--storage-option key=value` (see `set_storage_options`) overrides them. Errors of the store
(missing bucket, denied access, no endpoint) are a one-line GenaugError naming the URL and the fix.

https:// and http:// are read-only and never listed (a static file host usually has no directory listings): a
shard folder there is known by its manifest.json, and its entries are the shards and stats that manifest names.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from genaug.core.errors import GenaugError
from genaug.core.files import read_json as _read_json_local
from genaug.core.files import write_json_atomic as _write_json_local
from genaug.core.jsonio import parse_json

#: schemes genaug accepts as shard locations; https/http are read-only
WRITABLE_SCHEMES = ("s3", "gs", "gcs", "memory")
READ_ONLY_SCHEMES = ("https", "http")
ENV_OPTIONS = "GENAUG_STORAGE_OPTIONS"
#: help text of every command's `--storage-option` flag
STORAGE_OPTION_HELP = (
    "fsspec option of a URL --shards as key=value (repeatable), e.g. endpoint_url=http://host:9000; overrides "
    "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ..., ~/.aws, GOOGLE_APPLICATION_CREDENTIALS and STORAGE_EMULATOR_HOST."
)
#: read-ahead of a remote file opened for streaming: bounded, so a worker never holds more than this per open shard
READ_BLOCK = 8 << 20
_EXTRA = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "https": "http", "http": "http"}
#: the environment variables a store's filesystem is built from (a change of one makes a new filesystem)
_ENV_KEYS = (
    ENV_OPTIONS,
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
)
_SHARD_FILE = re.compile(r"^\d{6}\.tar$")


def is_url(location: object) -> bool:
    """True when `location` is a URL (scheme://...) other than file://."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def scheme_of(url: str) -> str:
    """The scheme of a URL: s3, gs, https, ..."""
    return str(url).split("://", 1)[0].lower()


def parse_storage_options(pairs: list[str] | tuple[str, ...] | None) -> dict:
    """Parse `--storage-option key=value` flags (dotted keys nest, values are JSON when they parse) into a dict."""
    out: dict = {}
    for pair in pairs or ():
        key, sep, raw = str(pair).partition("=")
        if not sep or not key.strip():
            raise GenaugError(f"--storage-option {pair!r} is not key=value: e.g. --storage-option anon=true")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def set_storage_options(pairs: list[str] | tuple[str, ...] | dict | None) -> None:
    """Make `pairs` (key=value flags or a dict) the storage options of this process and of its children."""
    opts = pairs if isinstance(pairs, dict) else parse_storage_options(pairs)
    if opts:
        os.environ[ENV_OPTIONS] = json.dumps(opts, sort_keys=True)
    else:
        os.environ.pop(ENV_OPTIONS, None)
    _FS_CACHE.clear()


#: concurrent connections of an s3:// filesystem (config_kwargs.max_pool_connections; --storage-option overrides)
S3_CONNECTIONS = 64


def storage_options(scheme: str) -> dict:
    """fsspec options for `scheme`: the standard environment (AWS_ENDPOINT_URL, ...), then --storage-option."""
    opts: dict[str, Any] = {}
    if scheme in ("gs", "gcs"):
        # gcsfs reads STORAGE_EMULATOR_HOST (endpoint) itself; credentials: GOOGLE_APPLICATION_CREDENTIALS through
        # google-auth's defaults (a broken file is an error, not a silent anonymous fallback), none for an emulator
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            opts["token"] = "google_default"
        elif _emulator():
            opts["token"] = "anon"
        if os.environ.get("GOOGLE_CLOUD_PROJECT"):
            opts["project"] = os.environ["GOOGLE_CLOUD_PROJECT"]
    if scheme == "s3":
        if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
            opts["endpoint_url"] = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ["AWS_ENDPOINT_URL"]
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            opts["client_kwargs"] = {"region_name": region}
        # botocore's default pool of 10 connections makes a range read of ~50 members five round trips in a row
        opts["config_kwargs"] = {"max_pool_connections": S3_CONNECTIONS}
    raw = os.environ.get(ENV_OPTIONS)
    if raw:
        try:
            extra = json.loads(raw)
        except ValueError:
            raise GenaugError(
                f"${ENV_OPTIONS} is not valid JSON: unset it or pass --storage-option key=value"
            ) from None
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(opts.get(k), dict):
                opts[k] = {**opts[k], **v}
            else:
                opts[k] = v
    return opts


_FS_CACHE: dict = {}


class _OpenError(GenaugError):
    """The filesystem of a scheme could not be built (credentials); remote_errors prefixes the URL."""


def _emulator() -> bool:
    """True when STORAGE_EMULATOR_HOST points gs:// at a GCS emulator."""
    return os.environ.get("STORAGE_EMULATOR_HOST", "") not in ("", "default")


def filesystem(scheme: str):
    """The fsspec filesystem of `scheme` with this process's options (one per process: safe across fork)."""
    key = (os.getpid(), scheme, *(os.environ.get(k) for k in _ENV_KEYS))
    fs = _FS_CACHE.get(key)
    if fs is None:
        try:
            import fsspec

            opts = storage_options(scheme)
            if scheme in ("gs", "gcs") and (_emulator() or "endpoint_url" in opts):
                # an emulator or custom endpoint speaks the JSON API only: gcsfs's default class would first ask the
                # Storage Control gRPC API for each bucket's layout (zonal/HNS), which such endpoints do not serve
                from gcsfs.core import GCSFileSystem

                fs = GCSFileSystem(skip_instance_cache=True, **opts)
            else:
                fs = fsspec.filesystem(scheme, skip_instance_cache=True, **opts)
        except ImportError as e:
            extra = _EXTRA.get(scheme)
            hint = f"pip install 'genaug[{extra}]'" if extra else f"install the fsspec backend of {scheme}://"
            raise GenaugError(f"{scheme}:// shard sets need an extra package ({e}): {hint}") from None
        except ValueError as e:
            msg = f"{scheme}:// is not a storage scheme genaug can open ({e}): use s3://, gs:// or a path"
            raise GenaugError(msg) from None
        except Exception as e:  # credentials that do not load (google-auth, botocore): one line and the fix
            text = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise _OpenError(f"{scheme}:// storage cannot be opened ({text}): {_hints(scheme)[0]}") from None
        _FS_CACHE[key] = fs
    return fs


#: S3 error codes of a conditional request the store refused (If-Match / If-None-Match lost to another writer)
PRECONDITION_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def causes(e: BaseException) -> list[BaseException]:
    """`e` and what caused it (__cause__, else __context__), in order, each once."""
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not seen for seen in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def s3_error_code(e: BaseException) -> str:
    """The S3 error code (botocore's response Error.Code) of `e` or of what caused it; '' when none."""
    for obj in causes(e):
        resp = getattr(obj, "response", None)
        code = str(resp.get("Error", {}).get("Code", "")) if isinstance(resp, dict) else ""
        if code:
            return code
    return ""


def _http_status(e: BaseException) -> int | None:
    """The HTTP status of a failed request (gcsfs HttpError.code, aiohttp ClientResponseError.status), if any."""
    for obj in (e, e.__cause__, e.__context__):
        for attr in ("status", "code"):
            value = getattr(obj, attr, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
    return None


def _unreachable(e: BaseException) -> bool:
    """True when `e` (or its cause) is a failed connection rather than an answer of the server."""
    names = {type(o).__name__ for o in (e, e.__cause__, e.__context__) if o is not None}
    text = " ".join(str(o) for o in (e, e.__cause__, e.__context__) if o is not None)
    conn = ("ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ConnectionRefusedError")
    return bool(names & set(conn)) or any(
        s in text for s in ("Could not connect", "Connect timeout", "EndpointConnectionError", "Cannot connect")
    )


def _answer_unknown(e: FileNotFoundError) -> bool:
    """True when a "not found" hides a failed connection or a refusal (fsspec's http info() raises it for all)."""
    return e.__cause__ is not None and (_unreachable(e) or _http_status(e) in (401, 403))


def _hints(scheme: str) -> tuple[str, str]:
    """(credentials hint, endpoint hint) of `scheme` for one-line errors."""
    if scheme in ("gs", "gcs"):
        return (
            "check GOOGLE_APPLICATION_CREDENTIALS (or gcloud's default credentials) or pass --storage-option token=...",
            "check STORAGE_EMULATOR_HOST (or --storage-option endpoint_url=...) and the network",
        )
    if scheme in READ_ONLY_SCHEMES:
        return (
            "the host refused the request: pass its credentials as --storage-option headers.Authorization=...",
            "check the host in the URL and the network",
        )
    return (
        "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws for s3://, "
        "GOOGLE_APPLICATION_CREDENTIALS for gs://) or pass --storage-option key=...",
        "check AWS_ENDPOINT_URL (or --storage-option endpoint_url=...) and the network",
    )


def store_error(url: str, e: BaseException) -> GenaugError:
    """A one-line GenaugError for a failure of the object store at `url`, naming the URL and the fix."""
    if isinstance(e, GenaugError):
        return e
    code = s3_error_code(e)
    text = " ".join(f"{type(e).__name__}: {e}".split())[:300]  # one line, whatever the library's message holds
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    scheme = scheme_of(url)
    creds_hint, endpoint_hint = _hints(scheme)
    if code == "NoSuchBucket" or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return GenaugError(f"{url}: bucket {bucket!r} does not exist: create it, or fix the URL given to --shards")
    denied = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "InvalidToken", "403")
    if isinstance(e, PermissionError) or _http_status(e) in (401, 403) or any(d in code or d in text for d in denied):
        return GenaugError(f"{url}: access denied ({text}): {creds_hint}")
    if "CERTIFICATE_VERIFY_FAILED" in text or "CertificateError" in text:
        return GenaugError(
            f"{url}: the server's TLS certificate is not trusted ({text}): point SSL_CERT_FILE at its CA bundle"
        )
    if _unreachable(e):
        return GenaugError(f"{url}: cannot reach the {scheme}:// endpoint ({text}): {endpoint_hint}")
    return GenaugError(f"{url}: the object store failed ({text}): check the URL, credentials and endpoint")


@contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Turn failures of the object store inside the block into one-line GenaugErrors naming `url`."""
    try:
        yield
    except _OpenError as e:
        raise GenaugError(f"{url}: {e}") from None
    except GenaugError:
        raise
    except FileNotFoundError as e:
        if "NoSuchBucket" in f"{e!r} {s3_error_code(e)}" or "bucket does not exist" in str(e).lower():
            raise store_error(url, e) from None
        if _answer_unknown(e):
            raise store_error(url, e.__cause__) from None  # fsspec's http info() calls every failure "not found"
        raise
    except Exception as e:  # botocore, aiohttp and OSError subclasses: one line naming the URL
        raise store_error(url, e) from None


@dataclass(frozen=True)
class _Stat:
    st_size: int


@dataclass(frozen=True)
class RemotePath:
    """A pathlib-like handle of an object (or prefix) in an fsspec store: url = scheme://bucket/key."""

    url: str
    kind: str | None = field(default=None, compare=False, hash=False, repr=False)  # "file"/"directory" from ls

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/") if self.url.count("/") > 2 else self.url)

    # -- naming ------------------------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """The URL scheme: s3, gs, https, ..."""
        return scheme_of(self.url)

    @property
    def key(self) -> str:
        """The path inside the store, as fsspec names it (bucket/key for s3/gs, the URL for https)."""
        return self.url if self.scheme in READ_ONLY_SCHEMES else self.url.split("://", 1)[1]

    @property
    def fs(self):
        """The fsspec filesystem holding this path."""
        return filesystem(self.scheme)

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self.url.split("://", 1)[1].rstrip("/"))

    @property
    def parent(self) -> RemotePath:
        """The enclosing prefix."""
        scheme, rest = self.url.split("://", 1)
        head = posixpath.dirname(rest.rstrip("/"))
        return RemotePath(f"{scheme}://{head}") if head else self

    def __truediv__(self, other: str | os.PathLike) -> RemotePath:
        return RemotePath(f"{self.url.rstrip('/')}/{str(other).lstrip('/')}")

    def with_name(self, name: str) -> RemotePath:
        """This path with its last component replaced."""
        return self.parent / name

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    # -- queries -----------------------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        """False for read-only schemes (https)."""
        return self.scheme not in READ_ONLY_SCHEMES

    def _ask(self, test: str) -> bool:
        """The store's answer to fs.`test` (exists, isfile, isdir) for this key; False when it is not found."""
        with remote_errors(self.url):
            try:
                return bool(getattr(self.fs, test)(self.key))
            except FileNotFoundError:
                return False

    def exists(self) -> bool:
        """True when an object or a prefix with objects exists here (read-only hosts: an object, by HEAD)."""
        return self._ask("exists") if self.writable else self._object_exists()

    def is_file(self) -> bool:
        """True when an object exists here."""
        if self.kind is not None:
            return self.kind == "file"
        return self._ask("isfile") if self.writable else self._object_exists()

    def is_dir(self) -> bool:
        """True when objects exist under this prefix (read-only hosts, unlisted: when a manifest.json is here)."""
        if self.kind is not None:
            return self.kind == "directory"
        return self._ask("isdir") if self.writable else (self / "manifest.json")._object_exists()

    def is_symlink(self) -> bool:
        """Object stores have no symlinks."""
        return False

    def iterdir(self) -> Iterator[RemotePath]:
        """The objects and prefixes directly under this prefix (fresh listing, not a cached one).

        A read-only (https) host is never listed: a shard folder's entries are its manifest.json and the shards
        and stats files that manifest names and that exist (one HEAD each); any other folder has none."""
        if not self.writable:
            yield from self._manifest_entries()
            return
        with remote_errors(self.url):
            try:
                self.fs.invalidate_cache(self.key)
                entries = self.fs.ls(self.key, detail=True, refresh=True)
            except FileNotFoundError:
                entries = []
        for e in entries:
            name = posixpath.basename(str(e["name"]).rstrip("/"))
            if not name or str(e["name"]).rstrip("/") == self.key.rstrip("/"):
                continue
            kind = "directory" if e.get("type") == "directory" else "file"
            yield RemotePath(f"{self.url.rstrip('/')}/{name}", kind)

    def _object_exists(self) -> bool:
        """True when an object answers here (HEAD, then GET without the body); no listing needed."""
        with remote_errors(self.url):
            try:
                self.fs.info(self.key)
                return True
            except FileNotFoundError as e:
                if _answer_unknown(e):
                    raise  # not a 404: the host is unreachable or refused (remote_errors says which)
                return False

    def _manifest_entries(self) -> Iterator[RemotePath]:
        """The files of an unlisted shard folder: manifest.json, then each named tar and stats file that exists."""
        manifest = self / "manifest.json"
        try:
            doc = parse_json(manifest.read_bytes(), manifest)
        except FileNotFoundError:
            return
        except GenaugError:
            doc = {}
        yield RemotePath(manifest.url, "file")
        names = doc.get("shards") if isinstance(doc, dict) else None
        for name in names if isinstance(names, list) else []:
            if not (isinstance(name, str) and _SHARD_FILE.match(name)):
                continue
            for p in (self / name, self / f"{name[:6]}.json"):
                if p._object_exists():
                    yield RemotePath(p.url, "file")

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries directly under this prefix whose name matches `pattern` (one component, fnmatch)."""
        for p in self.iterdir():
            if fnmatch.fnmatchcase(p.name, pattern):
                yield p

    def stat(self) -> _Stat:
        """Size of the object (st_size only)."""
        with remote_errors(self.url):
            return _Stat(int(self.fs.size(self.key)))

    def read_bytes(self) -> bytes:
        """All bytes of the object."""
        with remote_errors(self.url):
            return self.fs.cat_file(self.key)

    def write_bytes(self, data: bytes) -> int:
        """Store `data` as this object in one PUT (atomic on an object store)."""
        self._check_writable()
        with remote_errors(self.url):
            self.fs.pipe_file(self.key, bytes(data))
            self.fs.invalidate_cache(self.parent.key)
        return len(data)

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object."""
        self._check_writable()
        with remote_errors(self.url):
            try:
                self.fs.rm_file(self.key)
            except FileNotFoundError:
                if not missing_ok:
                    raise
            self.fs.invalidate_cache(self.parent.key)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to create: prefixes exist once an object is under them (the bucket is checked instead)."""
        self._check_writable()
        check_bucket(self)

    def open(self, mode: str = "rb") -> BinaryIO:
        """Open the object for streaming reads with a bounded read-ahead."""
        if mode != "rb":
            raise ValueError("RemotePath.open supports 'rb' only: write with write_bytes (one atomic PUT)")
        with remote_errors(self.url):
            return self.fs.open(self.key, "rb", block_size=READ_BLOCK, cache_type="readahead")

    def _check_writable(self) -> None:
        if not self.writable:
            raise GenaugError(f"{self.url}: {self.scheme}:// is read-only: write shard sets to s3://, gs:// or a path")


Location = Path | RemotePath


def as_location(location: str | os.PathLike | RemotePath) -> Location:
    """A RemotePath for a URL (s3://, gs://, https://), else a pathlib.Path (file:// stripped)."""
    if isinstance(location, RemotePath):
        return location
    text = str(location)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if is_url(text):
        scheme = scheme_of(text)
        if scheme not in WRITABLE_SCHEMES + READ_ONLY_SCHEMES:
            raise GenaugError(f"--shards {text!r}: scheme {scheme}:// is not supported: use s3://, gs://, https://")
        return RemotePath(text)
    return Path(location)


def is_remote(location: object) -> bool:
    """True when `location` is a RemotePath or a URL."""
    return isinstance(location, RemotePath) or is_url(location)


def check_bucket(path: RemotePath) -> None:
    """Raise a one-line GenaugError when the bucket of `path` is missing or not accessible."""
    if path.scheme in READ_ONLY_SCHEMES:
        return
    bucket = path.key.split("/", 1)[0]
    with remote_errors(path.url):
        try:
            path.fs.ls(bucket, refresh=True)
        except FileNotFoundError:
            raise GenaugError(
                f"{path.url}: bucket {bucket!r} does not exist: create it, or fix the URL given to --shards"
            ) from None


def open_read(path: Location) -> BinaryIO:
    """Open a shard (local file or object) for streaming reads."""
    return path.open("rb")


def read_bytes(path: Location) -> bytes:
    """All bytes of a file or object."""
    return path.read_bytes()


def put_atomic(path: Location, data: bytes, fsync: bool = True) -> None:
    """Store `data` at `path` so a reader sees all of it or nothing: temp + fsync + rename locally, one PUT remotely."""
    if isinstance(path, RemotePath):
        path.write_bytes(data)
        return
    from genaug.core.files import write_bytes_atomic

    write_bytes_atomic(Path(path), data, fsync)


def read_json(path: Location) -> Any:
    """Read a JSON document; a missing or corrupt one is a user error naming it."""
    if not isinstance(path, RemotePath):
        return _read_json_local(Path(path))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GenaugError(f"{path} is missing") from None
    return parse_json(data, path)


def write_json(path: Location, doc: Any) -> None:
    """Write a JSON document atomically (same bytes locally and remotely)."""
    if not isinstance(path, RemotePath):
        _write_json_local(Path(path), doc)
        return
    path.write_bytes(json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n")


def file_sha256(path: Location, bufsize: int = 1 << 20) -> str:
    """sha256 of a file's or object's bytes (streamed)."""
    h = hashlib.sha256()
    with open_read(path) as f:
        while b := f.read(bufsize):
            h.update(b)
    return h.hexdigest()


def size_of(path: Location) -> int | None:
    """Size in bytes, or None when it does not exist."""
    try:
        return int(path.stat().st_size)
    except FileNotFoundError:
        return None
    except OSError:
        return None


def list_sizes(folder: Location) -> dict[str, int]:
    """{name: size} of the files directly in `folder`: one fresh listing (an https:// host is not listed: {})."""
    if isinstance(folder, RemotePath):
        if not folder.writable:
            return {}
        with remote_errors(folder.url):
            try:
                folder.fs.invalidate_cache(folder.key)
                entries = folder.fs.ls(folder.key, detail=True, refresh=True)
            except FileNotFoundError:
                return {}
        out = {}
        for e in entries:
            if e.get("type") != "directory":
                out[posixpath.basename(str(e["name"]).rstrip("/"))] = int(e.get("size") or 0)
        return out
    try:
        with os.scandir(folder) as it:
            return {e.name: e.stat().st_size for e in it if e.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        return {}


def read_many(paths: list[Location]) -> list[bytes | None]:
    """The bytes of each of `paths` (None for a missing one); objects of one store are fetched concurrently."""
    remote = [p for p in paths if isinstance(p, RemotePath)]
    got: dict[str, bytes | None] = {}
    if remote:
        fs = remote[0].fs
        with remote_errors(remote[0].url):
            found = fs.cat([p.key for p in remote], on_error="return")
        for p in remote:
            v = found.get(p.key)
            if isinstance(v, FileNotFoundError):
                got[p.url] = None
            elif isinstance(v, BaseException):
                raise store_error(p.url, v)
            else:
                got[p.url] = v
    out: list[bytes | None] = []
    for p in paths:
        if isinstance(p, RemotePath):
            out.append(got[p.url])
        else:
            try:
                out.append(Path(p).read_bytes())
            except FileNotFoundError:
                out.append(None)
    return out


def bytes_io(data: bytes) -> BinaryIO:
    """A seekable in-memory file over `data` (a shard fetched whole)."""
    return io.BytesIO(data)


def read_ranges(path: Location, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes [start, end) of each range of a file or object: local reads, or fsspec's concurrent cat_ranges."""
    if not ranges:
        return []
    if isinstance(path, RemotePath):
        with remote_errors(path.url):
            n = len(ranges)
            starts, ends = [a for a, _ in ranges], [b for _, b in ranges]
            return list(path.fs.cat_ranges([path.key] * n, starts, ends, on_error="raise"))
    out = []
    with open(path, "rb") as f:
        for a, b in ranges:
            f.seek(a)
            out.append(f.read(b - a))
    return out
