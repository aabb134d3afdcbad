"""genaug's tar I/O is webdataset's: webdataset's own pipeline reads genaug shards, ingest workers stay torch-free."""

import io
import subprocess
import sys
import tarfile

import pytest

from genaug.core.errors import GenaugError
from genaug.shards.tario import read_samples, split_name, write_samples
from genaug.shards.writer import commit_shard


def _samples(n):
    return [
        {"__key__": f"k{r:03d}", "jpg": bytes([r + 1]) * 700, "gen_0.jpg": b"g" * r, "cls": str(r)} for r in range(n)
    ]


def test_webdataset_pipeline_reads_genaug_shards(tmp_path):
    import webdataset as wds

    commit_shard(tmp_path, 0, _samples(5), ("jpg",))
    url = str(tmp_path / "000000.tar")
    theirs = [
        {k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"}
        for s in wds.WebDataset(url, shardshuffle=False)
    ]
    with open(url, "rb") as f:
        ours = list(read_samples(f))
    assert theirs == ours and [s["__key__"] for s in ours] == [f"k{r:03d}" for r in range(5)]
    assert ours[2] == {"__key__": "k002", "jpg": bytes([3]) * 700, "gen_0.jpg": b"gg", "cls": b"2"}


def test_headers_are_ustar_with_fixed_owner_mode_and_mtime():
    buf = io.BytesIO()
    write_samples(buf, _samples(2))
    data = buf.getvalue()
    assert b"PaxHeader" not in data and data[257:263] == b"ustar\x00"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "k000.cls",
        "k000.gen_0.jpg",
        "k000.jpg",
        "k001.cls",
        "k001.gen_0.jpg",
        "k001.jpg",
    ]
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {(946684800, 0o444, 0, 0, "", "")}


@pytest.mark.parametrize("field", ["", "_private", "a/b"])
def test_bad_field_names_are_refused_before_writing(field):
    with pytest.raises(GenaugError, match="field"):
        write_samples(io.BytesIO(), [{"__key__": "k0", field: b"x"}])


def test_field_case_is_kept_and_keys_split_at_the_first_dot():
    buf = io.BytesIO()
    write_samples(buf, [{"__key__": "k0", "JPG": b"x", "gen_3.jpg": b"y"}])
    (s,) = list(read_samples(io.BytesIO(buf.getvalue())))
    assert s == {"__key__": "k0", "JPG": b"x", "gen_3.jpg": b"y"}
    assert split_name("dir/k0.gen_3.jpg") == ("dir/k0", "gen_3.jpg") and split_name("README") == (None, None)


@pytest.mark.parametrize("cut", [2000, 1536, 1024, 512 * 7])
def test_truncated_tar_is_an_error_not_a_short_shard(cut):
    """Python's stream reader stops quietly at a cut in a header or at a member boundary; genaug's check does not."""
    buf = io.BytesIO()
    write_samples(buf, _samples(4))
    with pytest.raises(tarfile.ReadError, match="truncated|unexpected end of data"):
        list(read_samples(io.BytesIO(buf.getvalue()[:cut])))


def test_ingest_workers_do_not_import_torch_or_webdataset():
    """Spawned ingest workers import genaug.ingest.run only: webdataset (and so torch) is loaded on first tar I/O."""
    code = "import sys, genaug.ingest.run; print(sorted(m for m in ('torch', 'webdataset') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bench_tario_runs_and_writes_the_same_bytes_as_its_baseline():
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_tario.py"
    args = ["--samples", "5", "--kb", "1", "--k", "1", "--repeats", "1"]
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True).stdout
    assert "identical bytes" in out and out.count("ratio") == 2
