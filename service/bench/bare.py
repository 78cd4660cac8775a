"""The ceiling for ``logpipe bench ingest``: a bare grpcio server for the same Ingest methods that does nothing.

It parses each request (gRPC deserializes it, as in the real server) and answers ``accepted = len(events)`` without
per-event statuses, validation, batching or publishing. Same server shape as ``logpipe serve`` (sync grpcio, thread
pool). ``python -m service.bench.bare --port-file PATH``; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from service.contract import PublishRequest, PublishResponse, ingest_pb2_grpc


class BareIngest(ingest_pb2_grpc.IngestServicer):  # type: ignore[misc]
    def Publish(self, request: PublishRequest, context: Any) -> PublishResponse:
        return PublishResponse(sequence=request.sequence, accepted=len(request.events))

    def PublishStream(self, requests: Iterator[PublishRequest], context: Any) -> Iterator[PublishResponse]:
        for request in requests:
            yield PublishResponse(sequence=request.sequence, accepted=len(request.events))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", type=Path, required=True)
    p.add_argument("--workers", type=int, default=64)
    args = p.parse_args()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    ingest_pb2_grpc.add_IngestServicer_to_server(BareIngest(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
