"""What an S3 server served, counted at the server: a moto server's own request recorder, read back.

    proc, url, log = start_recording_moto(tmp_path)   # moto with MOTO_RECORDER_FILEPATH in tmp_path
    log.start()
    ...                                               # genaug reads from s3:// through `url`
    reqs = log.stop()                                 # [Request(method, bucket, key, range)] in arrival order
    log.get_bytes(reqs)                               # {"bucket/key": bytes served by GETs of that object}

The bytes of a GET are its Range's length, or the object's size (asked after the recording stopped, so the
question is not counted). Tests use it to show what crossed the network, not what genaug believes it fetched.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from genaug.testing.servers import start_moto

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class Request:
    """One request the server received: method, bucket, key ('' for a bucket-level call), Range header."""

    method: str
    bucket: str
    key: str
    range: str | None


class MotoRequestLog:
    """Start, stop and read back the request recorder of a moto server at `endpoint`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")

    def _call(self, action: str, method: str = "POST") -> bytes:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def start(self) -> None:
        """Forget what was recorded and record every request from now on."""
        self._call("reset-recording")
        self._call("start-recording")

    def stop(self) -> list[Request]:
        """Stop recording; the requests received since start()."""
        self._call("stop-recording")
        out = []
        for line in self._call("download-recording", "GET").decode("utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            path = unquote(urlparse(entry["url"]).path).lstrip("/")
            bucket, _, key = path.partition("/")
            rng = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}.get("range")
            out.append(Request(entry["method"], bucket, key, rng))
        return out

    def get_bytes(self, requests: list[Request]) -> dict[str, int]:
        """Bytes served per object ("bucket/key") by the GETs among `requests` (object reads, not listings)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        sizes: dict[str, int] = {}
        out: dict[str, int] = {}
        for r in requests:
            if r.method != "GET" or not r.key:
                continue
            name = f"{r.bucket}/{r.key}"
            m = _RANGE.match(r.range or "")
            if m and m.group(2):
                n = int(m.group(2)) - int(m.group(1)) + 1
            else:
                if name not in sizes:
                    sizes[name] = int(client.head_object(Bucket=r.bucket, Key=r.key)["ContentLength"])
                n = sizes[name] - (int(m.group(1)) if m else 0)
            out[name] = out.get(name, 0) + n
        return out


def start_recording_moto(folder: str | Path):
    """A moto server whose request recorder writes into `folder`: (process, endpoint URL, MotoRequestLog)."""
    rec = Path(folder) / "moto-requests.jsonl"
    proc, url = start_moto({"MOTO_RECORDER_FILEPATH": str(rec)})
    return proc, url, MotoRequestLog(url)
