"""Reading shard sets from s3:// in eval, inspect, score and the Ray engine, against a real moto S3 server.

One module-scoped bucket holds the set (train + val, a tiny generated column); an identical local copy (same image
tree, same ingest settings, so the same tar bytes) is the reference every s3:// result is compared with.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from genaug.testing.shards import ingest_quiet, write_image_tree

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

from genaug.cli import main  # noqa: E402

K = 2
BAD_ENDPOINT = "http://127.0.0.1:9"  # nothing listens there


def _one_thread_generate(**kw) -> dict:
    """The lease runner at one torch thread (what a 1-CPU Ray worker computes: byte equality needs the same count)."""
    import torch

    from genaug.generate.dispatch import generate

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return generate(model="tiny", k=K, batch_size=4, progress=False, fidelity=False, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def aws(s3_server):
    """The standard AWS variables pointing at the test server for the whole module, and a fresh bucket."""
    from genaug.testing.servers import AWS_TEST_ENV

    with pytest.MonkeyPatch.context() as mp:
        for k, v in {"AWS_ENDPOINT_URL": s3_server, **AWS_TEST_ENV}.items():
            mp.setenv(k, v)
        for k in ("GENAUG_STORAGE_OPTIONS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            mp.delenv(k, raising=False)
        bucket = f"b{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield bucket


@pytest.fixture
def env(aws, s3_server, monkeypatch):
    """Per test: the module's variables restored afterwards (a --storage-option sets GENAUG_STORAGE_OPTIONS)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("GENAUG_STORAGE_OPTIONS", "{}")
    monkeypatch.delenv("GENAUG_STORAGE_OPTIONS")
    return aws


@pytest.fixture(scope="module")
def sets(aws, tmp_path_factory) -> dict:
    """The same set twice: s3://<bucket>/set and a local folder; train (4 shards), val (2) and column `tiny`."""
    base = tmp_path_factory.mktemp("surfaces")
    tree = write_image_tree(base / "tree")
    url, local = f"s3://{aws}/set", base / "local"
    for where in (url, str(local)):
        ingest_quiet(tree, where)
        ingest_quiet(tree, where, split="val", per_shard=12)
        _one_thread_generate(shards=where, column="tiny")
    return {"url": url, "local": local, "base": base, "bucket": aws}


@pytest.fixture(scope="module")
def run(sets) -> Path:
    """A tiny SimCLR run trained from the s3:// set (streaming)."""
    from genaug.testing.runs import train_tiny

    return train_tiny("simclr", sets["url"], sets["base"] / "run", steps=2)


def _with_flag_only(argv: list[str]) -> int:
    """Run the CLI with the endpoint given by --storage-option only (AWS_ENDPOINT_URL points nowhere meanwhile)."""
    good = os.environ["AWS_ENDPOINT_URL"]
    os.environ["AWS_ENDPOINT_URL"] = BAD_ENDPOINT
    try:
        return main([*argv, "--storage-option", f"endpoint_url={good}"])
    finally:
        os.environ["AWS_ENDPOINT_URL"] = good
        os.environ.pop("GENAUG_STORAGE_OPTIONS", None)


def _eval_both(argv_tail: list[str], run: Path, sets: dict, tmp_path: Path, cmd: str, shards_flag: str = "--shards"):
    """`genaug eval <cmd>` on s3:// (endpoint given by --storage-option only) and on the local copy: both docs."""
    docs = {}
    for where, shards in (("s3", sets["url"]), ("local", str(sets["local"]))):
        home = tmp_path / where
        if not home.exists():  # a copy of the run per storage: no feature cache is shared between them
            shutil.copytree(run, home, ignore=shutil.ignore_patterns("features", "eval"))
        out = tmp_path / f"{cmd}-{where}.json"
        tail = [shards if a == "SHARDS" else a for a in argv_tail]
        argv = ["eval", cmd, str(home), *([shards_flag, shards] if shards_flag else []), *tail]
        argv += ["--quiet", "--result" if cmd == "ood" else "--out", str(out)]
        assert (_with_flag_only(argv) if where == "s3" else main(argv)) == 0, argv
        docs[where] = json.loads(out.read_text())
    return docs["s3"], docs["local"]


def _same_summary(a: dict, b: dict) -> None:
    assert a["summary"].keys() == b["summary"].keys() and a["summary"]
    for k, v in a["summary"].items():
        assert v == pytest.approx(b["summary"][k], abs=1e-6), k


def test_eval_linear_knn_ood_from_s3_equal_local(env, sets, run, tmp_path):
    url = sets["url"]
    lin_s3, lin_local = _eval_both(["--fast", "--workers", "2"], run, sets, tmp_path, "linear")  # forked readers
    _same_summary(lin_s3, lin_local)
    assert lin_s3["shards"] == url and lin_s3["preprocess"]["skipped_images"] == 0
    assert 0.0 <= lin_s3["summary"]["linear/top1"] <= 1.0
    feats = sorted(p.name for p in (tmp_path / "s3" / "features").glob("*.npz"))
    assert len(feats) == 2  # train and val features, cached next to the run
    knn_s3, knn_local = _eval_both(["--k", "5"], run, sets, tmp_path, "knn")
    _same_summary(knn_s3, knn_local)
    assert sorted(p.name for p in (tmp_path / "s3" / "features").glob("*.npz")) == feats  # reused
    ood_s3, ood_local = _eval_both(
        ["--in", "SHARDS", "--out", "SHARDS", "--fast", "--knn-k", "5", "--score", "mahalanobis", "--score", "knn"],
        run, sets, tmp_path, "ood", shards_flag="",
    )  # fmt: skip
    assert ood_s3["summary"]["ood/set/knn5/auroc"] == 0.5  # in and out are the same images: chance


def test_inspect_contact_sheet_and_views_from_s3(env, sets, tmp_path, capsys):
    docs, pngs = {}, {}
    for where, shards in (("s3", sets["url"]), ("local", str(sets["local"]))):
        out = tmp_path / f"contact-{where}.png"
        argv = ["inspect", "--shards", shards, "--gen", "tiny", "--n", "4", "--tile", "32", "--out", str(out)]
        assert (_with_flag_only(argv) if where == "s3" else main(argv)) == 0
        docs[where], pngs[where] = json.loads(out.with_suffix(".json").read_text()), out.read_bytes()
    assert docs["s3"]["shards"] == sets["url"] and len(docs["s3"]["keys"]) == 4 and docs["s3"]["k"] == K
    same = ("shards", "fidelity", "histogram")  # scores (if a test made them first) are compared in the score test
    assert {k: v for k, v in docs["s3"].items() if k not in same} == {
        k: v for k, v in docs["local"].items() if k not in same
    }
    assert pngs["s3"] == pngs["local"]  # the same tiles: the same bytes were read
    out = tmp_path / "views.png"
    argv = ["inspect", "--shards", sets["url"], "--views", "--pairs", "1", "--n", "2", "--view-size", "16"]
    assert _with_flag_only([*argv, "--tile", "32", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["gen"] == "tiny" and len(doc["keys"]) == 2
    with Image.open(out) as im:
        assert im.format == "PNG"


def _score_docs(shards: str) -> dict:
    from genaug.inspect import iter_scores
    from genaug.shards.layout import ShardSet

    return dict(iter_scores(ShardSet.open(shards).scores_dir("tiny", "train")))


def test_score_on_s3_equals_local_and_feeds_inspect(env, sets, tmp_path, capsys):
    from genaug.shards.verify import verify_set

    url = sets["url"]
    for where, shards in (("s3", url), ("local", str(sets["local"]))):
        argv = ["score", "--shards", shards, "--gen", "tiny", "--no-progress", "--batch-size", "8"]
        assert (_with_flag_only(argv) if where == "s3" else main(argv)) == 0
    assert f"scores of tiny: {url}/scores/tiny/train: 4 shards scored now" in capsys.readouterr().out
    remote, local = _score_docs(url), _score_docs(str(sets["local"]))
    assert len(remote) == 24 and remote.keys() == local.keys()
    for key, doc in remote.items():
        assert doc["scores"] == pytest.approx(local[key]["scores"], abs=1e-5), key
    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    names = {o["Key"] for o in c.list_objects_v2(Bucket=sets["bucket"], Prefix="set/scores/")["Contents"]}
    expect = {f"set/scores/tiny/train/{i:06d}.{e}" for i in range(4) for e in ("json", "tar", "idx.json")}
    # no lock or temp objects in the bucket; the completion record score writes after its last commit
    assert names == expect | {"set/scores/tiny/train/manifest.json", "set/scores/tiny/train/complete.json"}
    assert verify_set(url)[1] == []
    capsys.readouterr()
    assert _with_flag_only(["score", "--shards", url, "--gen", "tiny", "--no-progress"]) == 0  # a rerun: all done
    assert "0 shards scored now" in capsys.readouterr().out
    out = tmp_path / "by-score.png"
    argv = ["inspect", "--shards", url, "--gen", "tiny", "--sort", "score", "--n", "4", "--tile", "32"]
    assert _with_flag_only([*argv, "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert len(doc["fidelity"]) == 4 and doc["histogram"] and Path(doc["histogram"]).is_file()


def _objects(bucket: str, prefix: str) -> dict[str, bytes]:
    c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) :]] = c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def test_ray_engine_on_s3_with_lease_dir(env, sets, tmp_path, monkeypatch, request, capsys):
    """A 1-CPU local Ray started without the store's variables: the actors get them (and --storage-option)."""
    ray = pytest.importorskip("ray")
    from genaug.generate.dispatch import generate_ray
    from genaug.shards.reader import iter_shard_raw
    from genaug.shards.verify import verify_set

    url, good = sets["url"], os.environ["AWS_ENDPOINT_URL"]
    if ray.is_initialized():
        ray.shutdown()
    request.addfinalizer(ray.shutdown)
    monkeypatch.setenv("AWS_ENDPOINT_URL", BAD_ENDPOINT)  # what the raylet (and so every worker) inherits
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    from genaug.testing.servers import AWS_TEST_ENV

    for k, v in {"AWS_ENDPOINT_URL": good, **AWS_TEST_ENV}.items():
        monkeypatch.setenv(k, v)
    leases = tmp_path / "leases"
    kw = dict(model="tiny", shards=url, column="ray", k=K, batch_size=4, progress=False, fidelity=False, workers=1)
    out = generate_ray(**kw, lease_dir=leases)
    assert sorted(out["shards"]) == [0, 1, 2, 3] and out["images"] == 24 * K and not out["worker_failures"]
    objs = _objects(sets["bucket"], "set/gen/ray/train/")
    col = sets["local"] / "gen" / "tiny" / "train"
    for i in range(4):  # the lease runner's bytes (one thread each), made in the actor from and into s3://
        assert objs[f"{i:06d}.tar"] == (col / f"{i:06d}.tar").read_bytes()
        assert json.loads(objs[f"{i:06d}.json"])["pid"] != os.getpid()
    assert not [k for k in objs if ".leases" in k] and any(leases.rglob(".leases"))
    assert verify_set(url)[1] == []
    again = generate_ray(**kw, lease_dir=leases)
    assert again["shards"] == [] and again["workers"] == 0
    # the CLI: the endpoint reaches the actors only through --storage-option (GENAUG_STORAGE_OPTIONS)
    argv = ["generate", "--engine", "ray", "--shards", url, "--column", "ray-cli", "--k", str(K), "--no-fidelity"]
    argv += ["--batch-size", "4", "--workers", "1", "--limit-shards", "1", "--no-progress"]
    assert _with_flag_only(argv) == 0
    keys = [s["__key__"] for s in iter_shard_raw(f"{url}/gen/ray-cli/train/000000.tar")]
    assert keys == [s["__key__"] for s in iter_shard_raw(col / "000000.tar")]


@pytest.mark.parametrize("where", ["missing-set", "missing-bucket", "bad-scheme"])
def test_errors_are_one_line(env, sets, run, where, capsys):
    url = {
        "missing-set": f"s3://{env}/nothing-here",
        "missing-bucket": f"s3://{env}-missing/set",
        "bad-scheme": "ftp://host/set",
    }[where]
    fix = {"missing-set": "genaug ingest", "missing-bucket": "does not exist", "bad-scheme": "use s3://"}[where]
    commands = [
        ["eval", "linear", str(run), "--shards", url, "--fast"],
        ["eval", "knn", str(run), "--shards", url],
        ["eval", "ood", str(run), "--in", url, "--out", url, "--fast"],
        ["eval", "similarity", str(run), str(run), "--shards", url],
        ["inspect", "--shards", url],
        ["score", "--shards", url, "--gen", "tiny"],
        ["generate", "--engine", "ray", "--shards", url, "--workers", "1"],
    ]
    for argv in commands:
        capsys.readouterr()
        assert _with_flag_only(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("genaug: error: ") and "\n" not in err and "Traceback" not in err, err
        assert url in err and fix in err, (argv, err)
