"""The generated code in engine/api is what `python -m engine.protogen` makes of proto/ now."""

from __future__ import annotations

from pathlib import Path

from engine.protogen import OUT_DIR, generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "api"
    written = generate(fresh)
    assert written, "protoc wrote nothing"
    made = {p.relative_to(fresh): p.read_bytes() for p in fresh.rglob("*.py*")}
    committed = {
        p.relative_to(OUT_DIR): p.read_bytes()
        for p in OUT_DIR.rglob("*.py*")
        if "__pycache__" not in p.parts
    }
    missing = sorted(str(p) for p in made.keys() - committed.keys())
    extra = sorted(str(p) for p in committed.keys() - made.keys())
    stale = sorted(str(p) for p in made.keys() & committed.keys() if made[p] != committed[p])
    assert not (missing or extra or stale), (
        f"engine/api is stale against proto/ (missing {missing}, not generated {extra}, "
        f"different {stale}); run `python -m engine.protogen` and commit engine/api"
    )


def test_service_proto_follows_the_style() -> None:
    """buf STANDARD basics, and a comment above every message, enum, field and RPC."""
    from engine.api.equity_engine.v1 import service_pb2

    service = service_pb2.DESCRIPTOR.services_by_name["EquityService"]
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    from engine.api.equity_engine.v1 import portfolio_pb2, result_pb2

    for module in (service_pb2, portfolio_pb2, result_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper()
            assert enum.values[0].name == f"{prefix}_UNSPECIFIED" and enum.values[0].number == 0
            assert all(v.name.startswith(prefix + "_") for v in enum.values)
    root = Path(__file__).resolve().parent.parent / "proto" / "equity_engine" / "v1"
    for name in ("service.proto", "portfolio.proto", "result.proto"):
        lines = (root / name).read_text().splitlines()
        for i, line in enumerate(lines):
            text = line.strip()
            declares = text.startswith(("message ", "enum ", "rpc ", "oneof ")) or (
                text.endswith(";") and "=" in text and not text.startswith(("syntax", "option"))
            )
            if declares:
                assert lines[i - 1].strip().startswith("//"), f"{name}:{i + 1} has no comment"
