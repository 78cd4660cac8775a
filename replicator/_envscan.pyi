"""Type stub of the C extension ``replicator._envscan`` (source: ``_envscan.c``; contract in its docstring)."""

def scan(body: bytes | bytearray | memoryview, json_payloads: bool = True, /) -> tuple[str, str, int] | None:
    """``(envelope_id, category, event_count)`` when upb parses ``body`` as an Envelope and the reference checks
    pass (with UTF-8 payloads required when ``json_payloads``); None when the reference decoder must decide.
    Releases the GIL; never raises for any bytes."""
