"""``GcsStore``: the ``ObjectStore`` contract (replicator/store.py) on Google Cloud Storage.

Every create is a single-request (multipart) upload with ``if_generation_match=0``. google-cloud-storage would switch
to a resumable upload above its module constant ``_MAX_MULTIPART_SIZE`` (8 MiB); fake-gcs-server ignores the
precondition on resumable uploads, and Pub/Sub messages reach 10 MB, so the adapter raises that threshold to
``SINGLE_REQUEST_LIMIT`` once, when the first store is built (there is no public knob; the contract test uploads 9 MiB
twice and would fail if the second upload overwrote). The same step swaps in a cheaper multipart body builder
(``replicator/gcs_tuning.py``). The client's own retries are disabled (``retry=None``): all
retrying happens in ``RetryPolicy`` with its explicit retryable list.

``create_if_absent`` does not go through ``Blob.upload_from_string`` by default: up to ``SINGLE_REQUEST_LIMIT`` it
sends the same single-request upload with ``ifGenerationMatch=0`` through ``MultipartUploader``
(replicator/gcs_upload.py), on the client's own credentials and endpoint, at about half the client CPU; larger
objects (finalized data files only) keep the library's path, as before. ``library_upload=True`` keeps the library's
path for everything (the entry point chooses it when the environment sets a proxy or NETRC, which only requests
resolves, and for mTLS sessions).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import storage

from replicator import gcs_tuning
from replicator.errors import ObjectNotFound, StoreError
from replicator.gcs_upload import MultipartUploader
from replicator.retry import RetryPolicy
from replicator.store import Created, ObjectInfo, crc32c_b64

SINGLE_REQUEST_LIMIT = gcs_tuning.SINGLE_REQUEST_LIMIT
#: (connect, read) timeouts of one HTTP request; a hung request becomes a retryable timeout.
TIMEOUT = (5.0, 60.0)
#: Objects per listing request (the JSON API's maximum is 1000).
LIST_PAGE_SIZE = 1000


class GcsStore:
    """An ``ObjectStore`` on bucket ``bucket`` through an injected ``storage.Client``. No I/O in the constructor."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
        *,
        uploader: MultipartUploader | None = None,
        library_upload: bool = False,
    ) -> None:
        gcs_tuning.apply()
        self._timeout = timeout
        self._bucket = client.bucket(bucket)
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        if uploader is None and not library_upload and not getattr(client._http, "is_mtls", False):
            uploader = MultipartUploader(client._credentials, client._connection.API_BASE_URL, bucket, timeout=timeout)
        self._uploader = None if library_upload else uploader

    def open_connections(self, n: int) -> int:
        """Open ``n`` upload connections ahead of the first messages (see ``MultipartUploader.open_connections``);
        0 when creates go through the library. Never raises."""
        return self._uploader.open_connections(n) if self._uploader is not None and n > 0 else 0

    def _call(self, fn: Callable[[], Any], op: str, name: str) -> Any:
        return self._retry.call(fn, op, name, on_retry=self._on_retry)

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        uploader = self._uploader
        if uploader is not None and len(data) <= SINGLE_REQUEST_LIMIT:
            # Larger data files keep the library's resumable upload (see the module docstring of store_gcs).

            crc = crc32c_b64(data)  # once: the request's object resource and the result (~0.07 ms per 0.5 MiB)

            def direct() -> Created:
                if uploader.create(name, data, metadata, content_type or "application/octet-stream", crc):
                    return Created(True, crc, len(data))
                return self._existing(name)

            created: Created = self._call(direct, "create", name)
            return created

        def attempt() -> Created:
            blob = self._bucket.blob(name)
            if metadata:
                blob.metadata = dict(metadata)
            try:
                blob.upload_from_string(
                    data,
                    content_type=content_type or "application/octet-stream",
                    if_generation_match=0,
                    retry=None,
                    timeout=self._timeout,
                    checksum="crc32c",
                )
            except gexc.PreconditionFailed:
                return self._existing(name)
            return Created(True, crc32c_b64(data), len(data))

        result: Created = self._call(attempt, "create", name)
        return result

    def _existing(self, name: str) -> Created:
        """After a 412: what the existing object holds (crc32c, size)."""
        existing = self._bucket.get_blob(name, retry=None, timeout=self._timeout)
        if existing is None:  # deleted in between: vanishingly rare; let the retry loop try again
            raise gexc.ServiceUnavailable(f"{name} answered 412 but is gone")  # type: ignore[no-untyped-call]
        return Created(False, str(existing.crc32c), int(existing.size or 0))

    def read(self, name: str) -> bytes:
        def attempt() -> bytes:
            try:
                data: bytes = self._bucket.blob(name).download_as_bytes(
                    retry=None, timeout=self._timeout, checksum=None
                )
            except gexc.NotFound:
                raise ObjectNotFound(name) from None
            return data

        result: bytes = self._call(attempt, "read", name)
        return result

    def stat(self, name: str) -> ObjectInfo | None:
        def attempt() -> ObjectInfo | None:
            b = self._bucket.get_blob(name, retry=None, timeout=self._timeout)
            return None if b is None else _info(b)

        result: ObjectInfo | None = self._call(attempt, "stat", name)
        return result

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        """Page by page (``LIST_PAGE_SIZE`` objects each, each page retried on its own): memory is one page, not the
        whole listing. GCS lists in name order; pages are checked to stay in order (the contract of ``list``).
        ``start_offset`` is GCS's ``startOffset``: the service skips the names before it (they are not paged)."""
        token: str | None = None
        last = ""
        while True:

            def attempt(page_token: str | None = token) -> tuple[list[ObjectInfo], str | None]:
                it = self._bucket.client.list_blobs(
                    self._bucket,
                    prefix=prefix,
                    start_offset=start_offset or None,
                    page_token=page_token,
                    page_size=LIST_PAGE_SIZE,
                    retry=None,
                    timeout=self._timeout,
                )
                page = next(it.pages, None)
                return ([_info(b) for b in page] if page is not None else []), it.next_page_token

            infos, token = self._call(attempt, "list", prefix)
            infos.sort(key=lambda i: i.name)
            if infos and infos[0].name <= last:
                raise StoreError("list", prefix, "pages are not in name order", transient=False)
            yield from infos
            if infos:
                last = infos[-1].name
            if not token:
                return

    def delete(self, name: str) -> None:
        def attempt() -> None:
            with contextlib.suppress(gexc.NotFound):
                self._bucket.blob(name).delete(retry=None, timeout=self._timeout)

        self._call(attempt, "delete", name)


def _info(b: Any) -> ObjectInfo:
    updated = b.updated or dt.datetime.now(dt.UTC)
    return ObjectInfo(str(b.name), int(b.size or 0), str(b.crc32c or ""), updated, dict(b.metadata or {}))
