from service._gen.logpipe.v1 import event_pb2 as _event_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_CODE_UNSPECIFIED: _ClassVar[StatusCode]
    ACCEPTED: _ClassVar[StatusCode]
    UNKNOWN_CATEGORY: _ClassVar[StatusCode]
    CATEGORY_NOT_ALLOWED: _ClassVar[StatusCode]
    PAYLOAD_TOO_LARGE: _ClassVar[StatusCode]
    EVENT_TIME_OUT_OF_WINDOW: _ClassVar[StatusCode]
    INVALID_EVENT_ID: _ClassVar[StatusCode]
    DUPLICATE_EVENT_ID: _ClassVar[StatusCode]
    TOO_MANY_ATTRIBUTES: _ClassVar[StatusCode]
    ATTRIBUTES_TOO_LARGE: _ClassVar[StatusCode]
    INVALID_JSON: _ClassVar[StatusCode]
    INVALID_PRODUCER: _ClassVar[StatusCode]
STATUS_CODE_UNSPECIFIED: StatusCode
ACCEPTED: StatusCode
UNKNOWN_CATEGORY: StatusCode
CATEGORY_NOT_ALLOWED: StatusCode
PAYLOAD_TOO_LARGE: StatusCode
EVENT_TIME_OUT_OF_WINDOW: StatusCode
INVALID_EVENT_ID: StatusCode
DUPLICATE_EVENT_ID: StatusCode
TOO_MANY_ATTRIBUTES: StatusCode
ATTRIBUTES_TOO_LARGE: StatusCode
INVALID_JSON: StatusCode
INVALID_PRODUCER: StatusCode

class PublishRequest(_message.Message):
    __slots__ = ("events", "sequence", "omit_accepted_statuses")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OMIT_ACCEPTED_STATUSES_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.Event]
    sequence: int
    omit_accepted_statuses: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.Event, _Mapping]]] = ..., sequence: _Optional[int] = ..., omit_accepted_statuses: _Optional[bool] = ...) -> None: ...

class PublishRequestEventsView(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, events: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EventStatus(_message.Message):
    __slots__ = ("event_id", "index", "code", "message")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    index: int
    code: StatusCode
    message: str
    def __init__(self, event_id: _Optional[str] = ..., index: _Optional[int] = ..., code: _Optional[_Union[StatusCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("statuses", "sequence", "accepted", "rejected")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedCompositeFieldContainer[EventStatus]
    sequence: int
    accepted: int
    rejected: int
    def __init__(self, statuses: _Optional[_Iterable[_Union[EventStatus, _Mapping]]] = ..., sequence: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...
