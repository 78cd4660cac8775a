"""``MultipartUploader``: the library's bytes on the wire, the library's exception per status, the retry classes."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import urllib3
from google.api_core import exceptions as gexc

from replicator import gcs_tuning
from replicator.gcs_upload import MultipartUploader, multipart_body
from replicator.retry import is_transient
from replicator.store import crc32c_b64

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 480_000, 9 * 1024 * 1024])
def test_body_is_byte_identical_to_the_library(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(size)
    resource = {"name": "staging/a/2026/11/26/13/e.pb.zst", "metadata": {"k": "é"}, "crc32c": crc32c_b64(data)}
    boundary = b"===============1234567890123456789=="
    monkeypatch.setattr(gcs_tuning._upload, "get_boundary", lambda: boundary)
    expected, _ = gcs_tuning.LIBRARY_CONSTRUCT_MULTIPART(data, resource, "application/x")
    assert multipart_body(data, resource, "application/x", boundary) == expected


class _Resp:
    def __init__(self, status: int, data: bytes = b"") -> None:
        self.status = status
        self.data = data


class _Http:
    def __init__(self, status: int, data: bytes = b"") -> None:
        self.calls: list[dict[str, Any]] = []
        self._resp = _Resp(status, data)

    def urlopen(self, method: str, url: str, **kw: Any) -> _Resp:
        self.calls.append({"method": method, "url": url, **kw})
        return self._resp


def _uploader(status: int, data: bytes = b"") -> tuple[MultipartUploader, _Http]:
    up = MultipartUploader(None, "http://127.0.0.1:1/", "bkt")
    http = _Http(status, data)
    up._http = http  # type: ignore[assignment]
    return up, http


def test_one_single_request_upload_with_the_precondition_and_no_urllib3_retries() -> None:
    up, http = _uploader(200)
    assert up.create("a/b", b"xyz", {"k": "v"}, "application/x") is True
    (call,) = http.calls
    assert call["method"] == "POST"
    assert call["url"] == "http://127.0.0.1:1/upload/storage/v1/b/bkt/o?uploadType=multipart&ifGenerationMatch=0"
    assert call["retries"] is False and call["redirect"] is False
    assert call["headers"]["content-type"].startswith("multipart/related; boundary=")
    body = b"".join(call["body"])
    assert b'"crc32c": "' + crc32c_b64(b"xyz").encode() + b'"' in body
    assert call["headers"]["content-length"] == str(len(body))
    boundary = call["headers"]["content-type"].split('"')[1].encode()
    assert body == multipart_body(b"xyz", {"name": "a/b", "metadata": {"k": "v"}, "crc32c": crc32c_b64(b"xyz")},
                                  "application/x", boundary)  # fmt: skip
    assert call["body"][1] is not None


def test_a_given_crc32c_is_sent_as_is() -> None:
    up, http = _uploader(200)
    assert up.create("a/b", b"xyz", None, "application/x", "AAAAAA==") is True
    assert b'"crc32c": "AAAAAA=="' in b"".join(http.calls[0]["body"])


def test_412_means_exists() -> None:
    up, _ = _uploader(412)
    assert up.create("a", b"x", None, "application/x") is False


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [
        (429, gexc.TooManyRequests, True),
        (500, gexc.InternalServerError, True),
        (503, gexc.ServiceUnavailable, True),
        (408, gexc.GoogleAPICallError, True),
        (403, gexc.Forbidden, False),
        (404, gexc.NotFound, False),
        (400, gexc.BadRequest, False),
    ],
)
def test_other_statuses_raise_the_library_exception(status: int, cls: type[Exception], transient: bool) -> None:
    up, _ = _uploader(status, b'{"error": {"code": 1, "message": "nope"}}')
    with pytest.raises(cls) as err:
        up.create("a", b"x", None, "application/x")
    assert "nope" in str(err.value)
    assert is_transient(err.value) is transient


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()), True),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.NewConnectionError(None, "refused"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ConnectTimeoutError(), True),
        (urllib3.exceptions.SSLError(), True),
        (urllib3.exceptions.IncompleteRead(3, 10), True),
        (urllib3.exceptions.ClosedPoolError(None, "closed"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.DecodeError(), False),
        (urllib3.exceptions.LocationParseError("x"), False),
    ],
)
def test_urllib3_errors_are_classified_like_their_requests_counterparts(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_a_refused_connection_is_a_transient_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        up = MultipartUploader(None, f"http://127.0.0.1:{port}", "bkt", timeout=(1.0, 1.0))
        from google.auth.credentials import AnonymousCredentials

        up._http.credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        with pytest.raises(Exception) as err:
            up.create("a", b"x", None, "application/x")
    assert is_transient(err.value)
