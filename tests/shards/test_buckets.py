"""What every writable object store must do alike, on each real test server (moto for s3://, fake-gcs-server for
gs://): the training and evaluation streams of a set in the bucket equal those of the same set on disk."""

from genaug.testing.shards import ingest_quiet


def test_train_and_eval_stream_from_a_bucket_equal_local(bucket_url, image_tree, tmp_path):
    from genaug.data.stream import build_eval_loader, build_train_loader
    from genaug.testing.runs import train_tiny

    url = f"{bucket_url}/train-set"
    local = tmp_path / "local"
    for where in (url, str(local)):
        ingest_quiet(image_tree, where)
        ingest_quiet(image_tree, where, split="val", per_shard=12)

    def keys(shards):
        loader = build_train_loader(shards, batch_size=4, num_workers=0, seed=3, views_recipe=None)
        return [k for b in loader for k in b["key"]]

    def eval_keys(shards):
        ev = build_eval_loader(shards, split="val", batch_size=5, num_workers=0, views_recipe=None)
        return [k for b in ev for k in b["key"]]

    got = keys(url)
    assert len(got) == 24 and got == keys(str(local))  # the same stream, whichever the storage
    assert len(eval_keys(url)) == 24 and eval_keys(url) == eval_keys(str(local))
    run = train_tiny("simclr", url, tmp_path / "run", steps=2)
    assert any(run.glob("checkpoint-*.pt"))
