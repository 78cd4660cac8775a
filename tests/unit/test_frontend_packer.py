"""Packer: envelopes carry exactly their events, and min/max event time attributes are exact per envelope."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from service.contract import Event
from service.envelope import EncodedEnvelope, decode
from service.frontend.metrics import Metrics
from service.frontend.packer import Packer, Ticket
from service.frontend.wire import stamp

pytestmark = pytest.mark.unit

HOUR = 1_764_162_000 // 3600


def _event(second: int, nanos: int) -> bytes:
    e = Event(event_id=str(uuid.uuid4()), category="app_log", payload=b'{"k":"' + b"x" * 200 + b'"}')
    e.event_time.seconds = HOUR * 3600 + second
    e.event_time.nanos = nanos
    return e.SerializeToString()


@pytest.mark.parametrize("give_times", [True, False])
def test_split_group_envelopes_have_exact_bounds(give_times: bool) -> None:
    out: list[EncodedEnvelope] = []

    def submit(env: EncodedEnvelope, done: Callable[[BaseException | None], None]) -> None:
        out.append(env)
        done(None)

    packer = Packer(submit, Metrics(), instance_id="fe", target_bytes=2000, max_latency_s=60, zstd_level=1)
    # Descending then ascending times, so every envelope of the split has its own min and max.
    seconds = [(3000 - 100 * i, 1000 * i + 7) for i in range(20)] + [(5 * i, 999_999_999) for i in range(20)]
    raws = [_event(s, n) for s, n in seconds]
    micros = [(HOUR * 3600 + s) * 1_000_000 + n // 1000 for s, n in seconds]
    ticket = Ticket()
    key = ("app_log", HOUR)
    packer.add(
        {key: raws}, ticket, stamp(1, 2, "c"), {key: [(HOUR * 3600 + s, n) for s, n in seconds]} if give_times else None
    )
    packer.flush_all()
    assert ticket.wait(1) and ticket.error is None
    assert len(out) > 2
    seen = 0
    for enc in out:
        env = decode(enc.data, enc.attributes)
        ts = [e.event_time.seconds * 1_000_000 + e.event_time.nanos // 1000 for e in env.events]
        assert ts == micros[seen : seen + len(ts)]
        seen += len(ts)
        lo, hi = min(ts), max(ts)
        assert enc.attributes["min_event_time"] == decode_bound(lo)
        assert enc.attributes["max_event_time"] == decode_bound(hi)
        assert enc.attributes["event_count"] == str(len(env.events))
        assert env.frontend == "fe" and env.category == "app_log" and env.envelope_id == enc.envelope_id
        assert env.HasField("created") and env.created.seconds > 0
        assert all(e.client_id == "c" and e.ingest_time.seconds == 1 for e in env.events)
    assert seen == len(raws)


def decode_bound(micros: int) -> str:
    import datetime as dt

    from service.envelope import rfc3339

    return rfc3339(dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros))
