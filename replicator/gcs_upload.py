"""``MultipartUploader``: the landing hot path's create-if-absent upload, one JSON-API multipart POST on urllib3.

Why not ``Blob.upload_from_string``: per 0.5 MiB envelope, google-cloud-storage + requests spent about 1.5 ms of
client CPU (most of it Python with the GIL held: blob and upload objects, a uuid4 invocation id and header set per
request, requests' per-request session merging, cookie handling and a CA-bundle ``isdir``). This path sends the same
request through google-auth's ``AuthorizedHttp`` (credentials and their refresh on 401 exactly as the library's
session does) on a urllib3 pool: about 0.7 ms (docs/replicator-perf.md).

Contract (the store contract suite and the fault-proxy tests run ``GcsStore`` through it):
  * ``create(name, data, metadata, content_type)`` sends ONE single-request upload of ``data`` with
    ``ifGenerationMatch=0`` (never a resumable upload; the precondition is honoured by fake-gcs-server only on this
    path) and the body's CRC32C in the object resource, so GCS rejects corrupted bytes. Any size.
  * Returns True when the object was created, False when GCS answered 412 (an object of that name exists).
  * Any other HTTP status raises the ``google.api_core.exceptions`` class of that status (``from_http_status``), as
    the library does, so ``replicator/retry.py`` classifies it the same way. Transport errors surface as urllib3's
    exceptions; retry.py lists the transient ones. urllib3's own retries and redirects are off: retrying happens only
    in ``RetryPolicy``.
  * Thread-safe; no I/O in the constructor.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import urllib3
from google.api_core import exceptions as gexc

from replicator.store import crc32c_b64

_CRLF = b"\r\n"


def multipart_parts(
    data: bytes, resource: Mapping[str, Any], content_type: str, boundary: bytes
) -> tuple[bytes, bytes, bytes]:
    """The JSON-API ``multipart/related`` body as (head, ``data``, tail): the object resource as JSON, then the bytes.

    Sent as these three pieces (one ``sendall`` each), so the 0.5 MiB body is never copied into a joined buffer."""
    sep = b"--" + boundary
    head = b"".join(
        (
            sep,
            b"\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n",
            json.dumps(resource).encode("utf-8"),
            _CRLF,
            sep,
            b"\r\ncontent-type: ",
            content_type.encode("utf-8"),
            _CRLF,
            _CRLF,
        )
    )
    return head, data, _CRLF + sep + b"--"


def multipart_body(data: bytes, resource: Mapping[str, Any], content_type: str, boundary: bytes) -> bytes:
    """``multipart_parts`` joined: the exact bytes on the wire."""
    return b"".join(multipart_parts(data, resource, content_type, boundary))


class MultipartUploader:
    """Uploads into ``bucket`` at ``api_base_url`` (e.g. ``https://storage.googleapis.com``) with ``credentials``.

    ``pool_size`` connections are kept per host (one per landing thread); ``ca_certs`` is the CA bundle for https.
    """

    def __init__(
        self,
        credentials: Any,
        api_base_url: str,
        bucket: str,
        *,
        pool_size: int = 10,
        ca_certs: str | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        user_agent: str = "logpipe-replicator",
    ) -> None:
        from google.auth.transport.urllib3 import AuthorizedHttp

        if ca_certs is None:
            import certifi

            ca_certs = certifi.where()
        manager = urllib3.PoolManager(num_pools=4, maxsize=pool_size, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs)
        base = api_base_url.rstrip("/")
        self.url = f"{base}/upload/storage/v1/b/{quote(bucket, safe='')}/o?uploadType=multipart&ifGenerationMatch=0"
        # The warm-up request: an empty listing (storage.objects.list, which the replicator's role has; a bucket GET
        # would need storage.buckets.get, which it does not), on the same host as the uploads.
        self._warm_url = (
            f"{base}/storage/v1/b/{quote(bucket, safe='')}/o?maxResults=1&prefix=_logpipe_warm_up/&fields=kind"
        )
        http = _OneHostUploads(manager, manager.connection_from_url(self.url))
        self._http = AuthorizedHttp(credentials, http=http)  # type: ignore[no-untyped-call]
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._user_agent = user_agent

    def open_connections(self, n: int) -> int:
        """Open ``n`` keep-alive connections to the upload host now (n requests held open at once, then returned to
        the pool), so that the pool does not grow on the first bursts. Returns how many succeeded. Blocks; raises
        nothing (a failure only means the pool fills on demand, as it would without this).

        Why: a pool that fills over minutes, one burst at a time, looks like a file-descriptor leak in a soak.
        """
        barrier = threading.Barrier(n, timeout=30)

        def one() -> bool:
            try:
                resp = self._http.urlopen(  # type: ignore[no-untyped-call]
                    "GET", self._warm_url, headers={"user-agent": self._user_agent},
                    timeout=self._timeout, retries=False, redirect=False, preload_content=False,
                )  # fmt: skip
                barrier.wait()  # every connection is checked out at once, so each request gets its own
                resp.read()
                resp.release_conn()
                return bool(resp.status == 200)
            except Exception:  # the pool simply fills on demand
                barrier.abort()
                return False

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="gcs-warm") as pool:
            return sum(pool.map(lambda _: one(), range(n)))

    def create(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None, content_type: str, crc32c: str | None = None
    ) -> bool:
        """See the module docstring. ``crc32c``: the caller's ``crc32c_b64(data)``, if it has one (computed here
        otherwise). Blocks for one HTTP request."""
        resource: dict[str, Any] = {"name": name}
        if metadata:
            resource["metadata"] = dict(metadata)
        resource["crc32c"] = crc32c or crc32c_b64(data)
        boundary = b"===============" + os.urandom(10).hex().encode("ascii") + b"=="
        body = multipart_parts(data, resource, content_type, boundary)
        headers = {
            "content-type": 'multipart/related; boundary="' + boundary.decode("ascii") + '"',
            # Stated, so urllib3 sends the pieces as they are (no chunked transfer encoding).
            "content-length": str(sum(map(len, body))),
            "user-agent": self._user_agent,
        }
        resp = self._http.urlopen(  # type: ignore[no-untyped-call]
            "POST", self.url, body=body, headers=headers, timeout=self._timeout, retries=False, redirect=False
        )
        if resp.status == 200:
            return True
        if resp.status == 412:
            return False
        raise gexc.from_http_status(resp.status, f"POST {self.url} ({name}): {_error_message(resp.data)}")  # type: ignore[no-untyped-call]


class _OneHostUploads:
    """The ``http`` of ``AuthorizedHttp``: ``urlopen`` (only our uploads, all to one host) goes straight to that host's
    connection pool, skipping ``PoolManager``'s per-request pool lookup (~5% of the landing path's GIL time);
    ``request`` (google-auth's token refreshes, any host) and everything else go through the ``PoolManager``."""

    def __init__(self, manager: urllib3.PoolManager, pool: Any) -> None:
        self._manager = manager
        self._pool = pool

    def urlopen(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._pool.urlopen(method, url, **kwargs)  # a URL of another host raises HostChangedError

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def _error_message(body: bytes) -> str:
    """The ``error.message`` of a JSON-API error body, else the start of the body."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:500].decode("utf-8", "replace")
