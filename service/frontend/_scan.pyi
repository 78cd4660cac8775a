"""Stub for the C module ``service.frontend._scan`` (see _scan.c for the contract)."""

ScanGroup = tuple[str, int, int, bytes, bytes, bytes, int, int]

def scan(
    raw: bytes,
    categories: tuple[tuple[str, bool], ...],
    stamp: bytes,
    lo: int,
    hi: int,
    max_payload: int,
    max_producer: int,
    max_events: int,
    /,
) -> tuple[int, bool, int, int, list[ScanGroup]] | None: ...
def json_ok(payload: bytes, /) -> bool: ...
