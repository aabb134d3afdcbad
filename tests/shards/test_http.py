"""Read-only shard sets on a static https:// or http:// host, against real servers on 127.0.0.1 (subprocesses).

One server is the stdlib's `python -m http.server` (HTML directory listings); the other answers 404 for every
folder, like a bucket website or a CDN, which proves genaug never needs a listing on such a host.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_errors import one_line_error  # tests/shards/cli_errors.py

from genaug.testing.shards import ingest_quiet, write_image_tree

pytest.importorskip("aiohttp")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The folder the servers publish: set/ (train: 4 shards, val: 2) and flipped/ (a copy with one flipped byte)."""
    base = tmp_path_factory.mktemp("http")
    tree = write_image_tree(base / "tree")
    root = base / "site"
    ingest_quiet(tree, root / "set", per_shard=6)
    ingest_quiet(tree, root / "set", split="val", per_shard=12)
    shutil.copytree(root / "set", root / "flipped")
    tar = root / "flipped" / "train" / "000001.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 0x01
    tar.write_bytes(bytes(data))
    return root


@pytest.fixture(scope="module")
def hosts(site):
    """Base URLs of the two servers of `site`: {"listings": ..., "no-listings": ...}; stopped after the module."""
    from genaug.testing.servers import start_static_http, stop_server

    started = {name: start_static_http(site, listings=(name == "listings")) for name in ("listings", "no-listings")}
    yield {name: url for name, (_, url) in started.items()}
    for proc, _ in started.values():
        stop_server(proc)


@pytest.fixture(autouse=True)
def _no_options(monkeypatch):
    monkeypatch.delenv("GENAUG_STORAGE_OPTIONS", raising=False)


@pytest.mark.parametrize("host", ["listings", "no-listings"])
def test_verify_over_http_and_flipped_byte(hosts, host, capsys):
    from genaug.cli import main
    from genaug.shards.verify import verify_set

    url = f"{hosts[host]}/set"
    reports, problems = verify_set(url)
    assert problems == []
    assert [(str(r.folder), r.shards, r.samples) for r in reports] == [(f"{url}/train", 4, 24), (f"{url}/val", 2, 24)]
    flipped = f"{hosts[host]}/flipped"
    capsys.readouterr()
    assert main(["verify", "--shards", flipped]) == 1
    assert f"{flipped}/train/000001.tar: sha256 differs" in capsys.readouterr().out


def test_verify_reports_a_missing_shard_without_a_listing(hosts, site, capsys):
    from genaug.shards.verify import verify_set

    gone = site / "set" / "val" / "000001.tar"
    kept = gone.read_bytes()
    gone.unlink()
    try:
        problems = verify_set(f"{hosts['no-listings']}/set")[1]
    finally:
        gone.write_bytes(kept)
    assert len(problems) == 1 and problems[0].startswith(f"{hosts['no-listings']}/set/val/000001.tar: missing")


def test_train_and_eval_stream_over_http_equal_local(hosts, site):
    from genaug.data.stream import build_eval_loader, build_train_loader

    url = f"{hosts['no-listings']}/set"

    def keys(shards):
        loader = build_train_loader(shards, batch_size=4, num_workers=0, seed=3, views_recipe=None)
        return [k for b in loader for k in b["key"]]

    got = keys(url)
    assert len(got) == 24 and got == keys(str(site / "set"))  # the same stream, whichever the storage

    def eval_keys(shards):
        ev = build_eval_loader(shards, split="val", batch_size=5, num_workers=0, views_recipe=None)
        return [k for b in ev for k in b["key"]]

    got = eval_keys(url)
    assert len(got) == 24 and got == eval_keys(str(site / "set"))


def test_writes_are_refused_in_one_line(hosts, site, capsys):
    url = f"{hosts['no-listings']}/new-set"
    tree = site.parent / "tree"
    err = one_line_error(["ingest", str(tree), "--shards", url, "--workers", "0", "--quiet"], capsys)
    assert url in err and "read-only" in err
    assert not (site / "new-set").exists()


def test_missing_set_and_unreachable_host_are_one_line(hosts, capsys):
    url = f"{hosts['no-listings']}/nothing"
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "not found" in err
    from genaug.testing.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/set"  # nothing listens there
    err = one_line_error(["verify", "--shards", url], capsys)
    assert url in err and "cannot reach" in err


def _self_signed(folder: Path) -> tuple[str, str]:
    """A self-signed certificate of 127.0.0.1 (its own CA) and its key: (certfile, keyfile)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(certfile), str(keyfile)


def test_https_with_a_self_signed_certificate(site, tmp_path, capsys):
    """https:// is the same read-only host; an untrusted certificate is one line, SSL_CERT_FILE trusts it."""
    from genaug.testing.servers import start_static_http, stop_server

    certfile, keyfile = _self_signed(tmp_path)
    proc, base = start_static_http(site, listings=False, cert=(certfile, keyfile))
    try:
        url = f"{base}/set"
        err = one_line_error(["verify", "--shards", url], capsys)
        assert url in err and "not trusted" in err and "SSL_CERT_FILE" in err, err
        env = {**os.environ, "SSL_CERT_FILE": certfile}
        env.pop("GENAUG_STORAGE_OPTIONS", None)
        r = subprocess.run(
            [sys.executable, "-m", "genaug", "verify", "--shards", url], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        assert f"{url}/train: 4 shards, 24 samples" in r.stderr, r.stderr
    finally:
        stop_server(proc)


def test_generated_column_and_inspect_over_http_equal_local(hosts, site, tmp_path, capsys):
    """A published set with a generated column: the training stream with --gen and a contact sheet, as on disk."""
    import json

    from genaug.cli import main
    from genaug.data.stream import build_train_loader
    from genaug.generate.dispatch import generate

    shutil.copytree(site / "set", site / "withgen")
    generate(model="tiny", shards=str(site / "withgen"), column="tiny", k=2, batch_size=4, progress=False)
    url = f"{hosts['no-listings']}/withgen"

    def batches(shards):
        loader = build_train_loader(shards, gen_columns=["tiny"], p=0.5, batch_size=4, num_workers=0, seed=1)
        return [(b["key"], b["replaced"].tolist(), b["views"][0].sum().item()) for b in loader]

    assert batches(url) == batches(str(site / "withgen"))
    docs, pngs = {}, {}
    for where, shards in (("http", url), ("local", str(site / "withgen"))):
        out = tmp_path / f"contact-{where}.png"
        argv = ["inspect", "--shards", shards, "--gen", "tiny", "--n", "4", "--tile", "32", "--out", str(out)]
        assert main(argv) == 0, capsys.readouterr().err
        docs[where], pngs[where] = json.loads(out.with_suffix(".json").read_text()), out.read_bytes()
    assert pngs["http"] == pngs["local"] and docs["http"]["keys"] == docs["local"]["keys"]
