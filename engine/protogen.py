"""Regenerate the Python code for ``proto/`` into ``engine/api``: ``python -m engine.protogen``.

protoc writes absolute imports named after the proto package (``from equity_engine.v1 import``);
they are rewritten to live under ``engine.api`` so the generated code needs no sys.path tricks.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "engine" / "api"
_IMPORT = re.compile(r"^from equity_engine\.(\S+) import", re.MULTILINE)


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Run protoc on every .proto file and return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    # the service's own protos; proto/google and proto/grpc are shipped for other
    # languages' clients (proto/THIRD_PARTY.md), Python has them from their packages
    protos = sorted(str(p.relative_to(PROTO_DIR))
                    for p in (PROTO_DIR / "equity_engine").rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        written = []
        for path in sorted(Path(tmp).rglob("*.py*")):
            target = out_dir / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = _IMPORT.sub(r"from engine.api.equity_engine.\1 import", path.read_text())
            target.write_text(text)
            written.append(target)
        for directory in {p.parent for p in written} | {out_dir}:
            while directory != out_dir.parent:
                (directory / "__init__.py").touch()
                directory = directory.parent
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out == OUT_DIR else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
