"""Reading: decoders for known fields; a genaug split read by webdataset's own loader across DataLoader workers."""

import torch.utils.data as tud

from genaug.shards import iter_shard
from genaug.shards.reader import complete_shards
from genaug.testing.shards import write_synthetic_split


def test_decoded_fields(tmp_path):
    folder = write_synthetic_split(tmp_path, num_shards=1, per_shard=3, size=16, num_classes=3)
    samples = list(iter_shard(folder / "000000.tar", images="pil"))
    assert [s["__key__"] for s in samples] == ["s000000r000000", "s000000r000001", "s000000r000002"]
    for s in samples:
        assert s["jpg"].size == (16, 16) and s["jpg"].mode == "RGB"
        assert isinstance(s["cls"], int) and 0 <= s["cls"] < 3
        assert s["json"]["class_name"] == f"class{s['cls']}"


def test_a_genaug_split_is_a_webdataset_for_two_dataloader_workers(tmp_path):
    """Interop: webdataset's own loader, split by worker, reads every sample of a genaug split exactly once."""
    import webdataset as wds

    folder = write_synthetic_split(tmp_path, num_shards=5, per_shard=4, size=8)
    urls = [str(p) for p in complete_shards(folder)]
    ds = wds.WebDataset(urls, shardshuffle=False, workersplitter=wds.split_by_worker).to_tuple("__key__", "cls")
    keys = [k for k, _ in tud.DataLoader(ds, batch_size=None, num_workers=2)]
    assert len(keys) == 20 and len(set(keys)) == 20


def test_sample_keys_parse_back_to_shard_and_row():
    """The shard-format module is the one place that reads a key: make_key and parse_key round-trip."""
    from genaug.shards.layout import make_key, parse_key

    assert parse_key(make_key(42, 7)) == (42, 7)
    assert parse_key("user_key-1") is None and parse_key("s000042r00007") is None
