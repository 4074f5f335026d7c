"""Server reflection answers in v1 and v1alpha: both list the services, and both hand out
the file descriptors a generic client needs to call EquityService (the v1 service can be
described too)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from engine.service.server import SERVICE_NAME, EquityServer, ServerConfig

VERSIONS = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    srv = EquityServer(ServerConfig(port=0, isolate_solves=False))
    srv.start()
    with grpc.insecure_channel(srv.address) as ch:
        yield ch
    srv.stop(grace=0.2)


def _ask(channel: grpc.Channel, service: str,
         *requests: reflection_pb2.ServerReflectionRequest
         ) -> list[reflection_pb2.ServerReflectionResponse]:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10))


@pytest.mark.parametrize("version", VERSIONS)
def test_both_versions_list_and_describe(channel: grpc.Channel, version: str) -> None:
    [listed, described, itself] = _ask(
        channel, version,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=VERSIONS[0]))
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health", *VERSIONS} <= names
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in described.file_descriptor_response.file_descriptor_proto]
    assert any(f.package == "equity_engine.v1" and any(s.name == "EquityService"
                                                       for s in f.service) for f in files)
    [v1] = [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in itself.file_descriptor_response.file_descriptor_proto]
    assert v1.package == "grpc.reflection.v1" and v1.service[0].name == "ServerReflection"
