"""The ``PublishResponse`` of a request whose accepted events are durable: one status per event, in request order.

``build_response`` answers a request the Python path checked (``validate.Checked``); ``scanned_response`` one the C
fast path accepted whole (``fastpath.Scanned``). When the request set ``omit_accepted_statuses``, only the rejected
events get a status. ``service.frontend.servicer`` calls them once a request's ticket settled without error.
"""

from __future__ import annotations

from service.contract import PublishRequest, PublishResponse, StatusCode
from service.frontend.fastpath import Scanned
from service.frontend.incoming import Incoming
from service.frontend.validate import Checked

_ACCEPTED = StatusCode.ACCEPTED


def scanned_response(request: PublishRequest | Incoming, scanned: Scanned) -> PublishResponse:
    """The response to a request the fast path accepted whole (parsed only when statuses list every event)."""
    resp = PublishResponse(sequence=scanned.sequence, accepted=scanned.accepted, rejected=0)
    if not scanned.omit_accepted_statuses:
        events = request.request.events if isinstance(request, Incoming) else request.events
        add = resp.statuses.add
        for i, e in enumerate(events):
            add(event_id=e.event_id, index=i, code=_ACCEPTED)
    return resp


def build_response(request: PublishRequest, checked: Checked) -> PublishResponse:
    """One status per event in request order; only the rejected ones if the request asked for compact answers."""
    resp = PublishResponse(sequence=request.sequence, accepted=checked.accepted, rejected=len(checked.rejections))
    add = resp.statuses.add
    if request.omit_accepted_statuses:
        for r in checked.rejections:
            add(event_id=r.event_id, index=r.index, code=r.code, message=r.message)
        return resp
    rejected = {r.index: r for r in checked.rejections}
    for i, e in enumerate(request.events):
        bad = rejected.get(i)
        if bad is None:
            add(event_id=e.event_id, index=i, code=_ACCEPTED)
        else:
            add(event_id=bad.event_id, index=i, code=bad.code, message=bad.message)
    return resp
