"""Fixtures for every test package: message classes generated from zipkin.proto at test time."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

SPECS = Path(__file__).resolve().parent / "specs"


@pytest.fixture(scope="session")
def zipkin_pb2(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Message classes built by protoc from specs/zipkin.proto, in a private descriptor pool (py_zipkin
    registers its own copy of the same names in the default pool)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("zipkin_proto") / "zipkin.desc"
    rc = protoc.main(["protoc", f"-I{SPECS}", f"--descriptor_set_out={out}", str(SPECS / "zipkin.proto")])
    assert rc == 0
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    kinds = pool.FindEnumTypeByName("zipkin.proto3.Span.Kind").values_by_name
    return SimpleNamespace(
        ListOfSpans=message_factory.GetMessageClass(pool.FindMessageTypeByName("zipkin.proto3.ListOfSpans")),
        CLIENT=kinds["CLIENT"].number,
        SERVER=kinds["SERVER"].number,
    )
