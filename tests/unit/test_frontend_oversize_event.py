"""G1, G4: an event padded with unknown fields is bounded by ``max_event_bytes`` (rejected per event), so no accepted
event can make an envelope larger than Pub/Sub's 10 MB cap; and an unpublishable envelope is never spooled and acked
(where it would block the spool's replay forever)."""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

import grpc
import pytest
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError

from service.contract import PublishResponse
from service.envelope import EncodedEnvelope
from service.frontend.publisher import FakePublisher
from tests.unit.frontend_support import event, published_event_ids, request, running_frontend
from tests.unit.frontend_support import until as _until
from tests.unit.test_gap_hostile_requests import _field

pytestmark = pytest.mark.unit

PUBSUB_MAX_REQUEST_BYTES = 10 * 1000 * 1000  # google-cloud-pubsub's _SERVER_PUBLISH_MAX_BYTES


class CappedPublisher(FakePublisher):
    """A FakePublisher that refuses what the real ``PublisherClient.publish`` refuses: a message that would make a
    publish request over 10 MB raises ``MessageTooLargeError`` synchronously (google-cloud-pubsub's
    ``_batch/thread.py``), every time it is tried."""

    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        size = len(envelope.data) + sum(len(k) + len(v) for k, v in envelope.attributes.items())
        if size > PUBSUB_MAX_REQUEST_BYTES:
            with self._lock:
                self.attempts += 1
            raise MessageTooLargeError("The message being published would produce too large a publish request")
        return super().publish(topic, envelope)


def test_unknown_field_bytes_make_an_unpublishable_envelope_that_is_acked_and_blocks_replay(tmp_path: Path) -> None:
    """A client sends one valid JSON event carrying an unknown field 15 of 10.5 MB (under the 16 MiB receive limit).
    Before the fix it was accepted and sealed into an ~10.5 MB envelope; the real ``PublisherClient.publish`` raised
    ``MessageTooLargeError`` synchronously; the sink spooled it and acked the client; the replayer then stopped at it
    on every pass, so no later envelope of any client was ever published. Now the event is refused (nothing acked),
    and an ordinary client's event afterwards is published."""
    pub = CappedPublisher()
    with running_frontend(tmp_path, publisher=pub, replay_interval_s=0.05) as (fe, stub, _p):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}", options=[("grpc.max_send_message_length", 64 << 20)])
        raw = channel.unary_unary("/logpipe.v1.Ingest/Publish")
        hostile = event()
        body = _field(1, hostile.SerializeToString() + _field(15, os.urandom(10_500_000)))
        acked: list[str] = []
        try:
            answer = PublishResponse.FromString(raw(body, timeout=30))
            if answer.accepted == 1:
                acked.append(hostile.event_id)
        except grpc.RpcError:
            pass  # refusing the oversized event (or the request) is fine: nothing acked, nothing to land
        finally:
            channel.close()
        # An ordinary client, afterwards: its acked event must reach Pub/Sub.
        good = event()
        assert stub.Publish(request(good), timeout=10).accepted == 1
        acked.append(good.event_id)
        landed = _until(lambda: set(acked) <= set(published_event_ids(pub)), 5.0)
        assert landed, (
            f"acked events never published: {sorted(set(acked) - set(published_event_ids(pub)))}; "
            f"spool depth {fe.spool.depth}, publish attempts {pub.attempts}"
        )
