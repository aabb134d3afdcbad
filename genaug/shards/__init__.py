"""The shard format: layout, manifests, atomic commit, reading, writing and verification."""

from genaug.shards.layout import ShardSet, resolve_shard_set, shard_name
from genaug.shards.reader import decode_sample, iter_shard, iter_shard_raw
from genaug.shards.writer import ShardPlan, ShardWriter, commit_shard, is_shard_done

__all__ = [
    "ShardPlan",
    "ShardSet",
    "ShardWriter",
    "commit_shard",
    "decode_sample",
    "is_shard_done",
    "iter_shard",
    "iter_shard_raw",
    "resolve_shard_set",
    "shard_name",
]
