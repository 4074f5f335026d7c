"""The protos shipped for other languages' clients (proto/google/rpc, proto/grpc/health)
compile, and define exactly the messages, fields and methods the server uses (the Python
packages' descriptors): a client generated from them decodes what the server sends."""

from __future__ import annotations

from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parent.parent / "proto"
SHIPPED = {
    "google/rpc/status.proto": status_pb2,
    "google/rpc/error_details.proto": error_details_pb2,
    "google/rpc/code.proto": code_pb2,
    "grpc/health/v1/health.proto": health_pb2,
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("protos") / "set.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{PROTO}", f"-I{include}",
                        f"--descriptor_set_out={out}", *SHIPPED]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """What the wire depends on: messages (nested too), fields, enums, methods."""

    def message(m: descriptor_pb2.DescriptorProto, prefix: str, out: dict[str, object]) -> None:
        name = f"{prefix}{m.name}"
        out[name] = sorted((f.name, f.number, f.type, f.label, f.type_name) for f in m.field)
        for e in m.enum_type:
            out[f"{name}.{e.name}"] = sorted((v.name, v.number) for v in e.value)
        for nested in m.nested_type:
            message(nested, f"{name}.", out)

    out: dict[str, object] = {"package": file.package}
    for m in file.message_type:
        message(m, "", out)
    for e in file.enum_type:
        out[e.name] = sorted((v.name, v.number) for v in e.value)
    for s in file.service:
        out[s.name] = sorted((x.name, x.input_type, x.output_type, x.server_streaming,
                              x.client_streaming) for x in s.method)
    return out


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_protos_match_what_the_server_uses(
        compiled: descriptor_pb2.FileDescriptorSet, name: str) -> None:
    [shipped] = [f for f in compiled.file if f.name == name]
    used = descriptor_pb2.FileDescriptorProto()
    SHIPPED[name].DESCRIPTOR.CopyToProto(used)
    assert _shape(shipped) == _shape(used)


def test_the_python_code_is_generated_from_the_services_own_protos_only() -> None:
    api = PROTO.parent / "engine" / "api"
    assert not (api / "google").exists() and not (api / "grpc").exists()
    assert "THIRD_PARTY.md" in {p.name for p in PROTO.iterdir()}
