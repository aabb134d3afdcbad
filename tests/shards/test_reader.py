"""Reading: decoders for known fields, and shards split across DataLoader workers without duplicates."""

import torch.utils.data as tud

from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards, make_shard_dataset, split_for
from genaug.testing.shards import write_synthetic_split


def test_decoded_fields(tmp_path):
    folder = write_synthetic_split(tmp_path, num_shards=1, per_shard=3, size=16, num_classes=3)
    samples = list(iter_shard(folder / "000000.tar", images="pil"))
    assert [s["__key__"] for s in samples] == ["s000000r000000", "s000000r000001", "s000000r000002"]
    for s in samples:
        assert s["jpg"].size == (16, 16) and s["jpg"].mode == "RGB"
        assert isinstance(s["cls"], int) and 0 <= s["cls"] < 3
        assert s["json"]["class_name"] == f"class{s['cls']}"


def test_split_for_is_a_partition():
    paths = list(range(11))
    parts = [split_for(paths, r, 2, w, 3) for r in range(2) for w in range(3)]
    assert sorted(x for p in parts for x in p) == paths


def test_two_dataloader_workers_read_each_sample_once(tmp_path):
    folder = write_synthetic_split(tmp_path, num_shards=5, per_shard=4, size=8)
    ds = make_shard_dataset(complete_shards(folder), images="bytes")
    loader = tud.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda s: s["__key__"])
    keys = list(loader)
    assert len(keys) == 20 and len(set(keys)) == 20
