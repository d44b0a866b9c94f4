"""Scriptable OTLP receivers for tests: OTLP/HTTP on aiohttp, OTLP/gRPC on grpcio's asyncio server.

Each records every request it decoded (with `opentelemetry-proto`) and answers from a script, then OK.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

RESET = 0  # HTTP script status: read the request, then cut the connection


def span_names(requests: list[ExportTraceServiceRequest]) -> list[str]:
    return [s.name for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]


@dataclass
class HttpStep:
    status: int = 200
    retry_after: str | None = None
    rejected: int = 0  # partial_success.rejected_spans on a 200
    delay: float = 0.0


@dataclass
class OtlpHttpReceiver:
    script: list[HttpStep] = field(default_factory=list)
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)  # accepted ones
    arrived: int = 0  # every request, answered or not
    content_types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.arrived += 1
        self.content_types.append(request.content_type)
        step = self.script.pop(0) if self.script else HttpStep()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status == RESET:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("scripted reset")
        if step.status != 200:
            headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
            return web.Response(status=step.status, text="not now", headers=headers)
        decoded = ExportTraceServiceRequest()
        decoded.ParseFromString(body)
        self.requests.append(decoded)
        response = ExportTraceServiceResponse()
        if step.rejected:
            response.partial_success.rejected_spans = step.rejected
            response.partial_success.error_message = "too old"
        return web.Response(body=response.SerializeToString(), content_type="application/x-protobuf")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.handle)
        return app


@dataclass
class GrpcStep:
    code: grpc.StatusCode = grpc.StatusCode.OK
    retry_delay: float | None = None  # a google.rpc.RetryInfo in grpc-status-details-bin
    rejected: int = 0
    delay: float = 0.0


class OtlpGrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.script: list[GrpcStep] = []
        self.requests: list[ExportTraceServiceRequest] = []  # accepted ones
        self.arrived = 0
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def Export(  # the generated servicer's method name
        self, request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> ExportTraceServiceResponse:
        self.arrived += 1
        step = self.script.pop(0) if self.script else GrpcStep()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.code != grpc.StatusCode.OK:
            status = status_pb2.Status(code=step.code.value[0], message="scripted")
            if step.retry_delay is not None:
                info = error_details_pb2.RetryInfo(
                    retry_delay=Duration(seconds=int(step.retry_delay), nanos=int(step.retry_delay % 1 * 1e9))
                )
                status.details.add().Pack(info)
            await context.abort(
                step.code,
                "scripted",
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        self.requests.append(request)
        response = ExportTraceServiceResponse()
        if step.rejected:
            response.partial_success.rejected_spans = step.rejected
            response.partial_success.error_message = "too old"
        return response

    async def start(self, port: int = 0) -> int:
        self.server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)


__all__ = [
    "RESET",
    "GrpcStep",
    "HttpStep",
    "OtlpGrpcReceiver",
    "OtlpHttpReceiver",
    "code_pb2",
    "span_names",
]
