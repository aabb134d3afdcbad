"""`--storage-option` as every command applies it: parsed, checked against the shard locations it is for, then set.

Two mistakes were accepted silently or reported as something else: options given for a shard set on a local path
(they do nothing), and a value of the wrong type for a switch (`anon=maybe`: the store then answered "access
denied"). Both are now one line naming the flag."""

from __future__ import annotations

from collections.abc import Iterable

from genaug.core.errors import GenaugError
from genaug.shards.storage import RemotePath, is_url, parse_storage_options, set_storage_options

#: fsspec options (s3fs, gcsfs, http) that are switches: true or false, nothing else
BOOL_OPTIONS = ("anon", "use_ssl", "requester_pays", "version_aware", "skip_instance_cache", "use_listings_cache")


def _is_remote(location: object) -> bool:
    from genaug.shards.layout import resolve_shard_set

    if is_url(str(location)):  # any URL: a scheme genaug cannot open is reported where the set is opened
        return True
    try:
        return isinstance(resolve_shard_set(location), RemotePath)  # a name under a $GENAUG_SHARDS URL counts
    except GenaugError:
        return False


def apply_storage_flags(pairs: list[str] | tuple[str, ...] | None, *locations: object) -> dict:
    """Parse and check `--storage-option` flags for the shard sets `locations` (None entries or lists allowed),
    make them this process's storage options and return them."""
    opts = parse_storage_options(pairs)
    for key in BOOL_OPTIONS:
        if key in opts and not isinstance(opts[key], bool):
            raise GenaugError(f"--storage-option {key}={opts[key]}: {key} is a switch, give {key}=true or {key}=false")
    flat: list[object] = []
    for loc in locations:
        if isinstance(loc, Iterable) and not isinstance(loc, (str, bytes)) and not hasattr(loc, "__fspath__"):
            flat += [x for x in loc if x is not None]
        elif loc is not None:
            flat.append(loc)
    if opts and flat and not any(_is_remote(x) for x in flat):
        names = ", ".join(str(x) for x in flat)
        raise GenaugError(
            f"--storage-option applies to a shard set in an object store (s3://, gs://, https://), and {names} is "
            "on a local path: drop --storage-option"
        )
    set_storage_options(opts)
    return opts
