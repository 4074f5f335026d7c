"""engine.memory: numpy's huge-page advice turned off where the kernel would stall on it,
freed blocks reused from the heap, both set by the pipeline itself, and the plan the same
either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.memory import DEFRAG, compacts_on_fault

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("setting", "stalls"), [
    ("always defer defer+madvise [madvise] never\n", True),
    ("[always] defer defer+madvise madvise never", True),
    ("always defer [defer+madvise] madvise never", True),
    ("always [defer] defer+madvise madvise never", False),
    ("always defer defer+madvise madvise [never]", False),
    ("", False),
])
def test_which_defrag_settings_stall(setting: str, stalls: bool) -> None:
    assert compacts_on_fault(setting) is stalls


def _run(code: str, keep: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "EQUITY_MEMORY_DEFAULTS"}
    if keep:
        env["EQUITY_MEMORY_DEFAULTS"] = "1"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=True, timeout=300)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


ALLOCATE = """
import hashlib, json
from numpy._core.multiarray import _get_madvise_hugepage
from engine.pipeline import allocate
from engine.portfolio import Portfolio
from engine.synthetic import example
before = bool(_get_madvise_hugepage())
customers, prospects, plan = example(20_000)
result = allocate(Portfolio(customers, prospects), plan)
units = result.units.write_ipc(None).getvalue()
print(json.dumps({"before": before, "after": bool(_get_madvise_hugepage()),
                  "bound": result.summary["bound"], "status": result.summary["status"],
                  "units": hashlib.sha256(units).hexdigest()}))
"""


def test_the_pipeline_turns_the_advice_off_only_where_it_stalls_and_the_plan_is_the_same() -> None:
    try:
        stalls = compacts_on_fault(DEFRAG.read_text())
    except OSError:
        stalls = False
    default = _run(ALLOCATE, keep=False)
    kept = _run(ALLOCATE, keep=True)
    assert default["before"] is True and kept["before"] is True  # numpy's own default
    assert default["after"] is (not stalls)
    assert kept["after"] is True  # EQUITY_MEMORY_DEFAULTS=1 keeps numpy's default
    assert default["status"] == kept["status"] == "optimal"
    assert default["bound"] == kept["bound"]
    assert default["units"] == kept["units"]  # the plan bit for bit


def test_configure_decides_once() -> None:
    code = """
import json
from numpy._core.multiarray import _get_madvise_hugepage, _set_madvise_hugepage
from engine import memory
first = memory.configure()
_set_madvise_hugepage(True)  # a later call does not decide again
second = memory.configure()
print(json.dumps({"first": first, "second": second, "advice": bool(_get_madvise_hugepage())}))
"""
    found = _run(code, keep=False)
    try:
        stalls = compacts_on_fault(DEFRAG.read_text())
    except OSError:
        stalls = False
    assert found["first"] is stalls
    assert found["second"] is False and found["advice"] is True


def test_freed_arrays_are_reused_without_faulting_their_pages_again() -> None:
    code = """
import json, resource
import numpy as np
from numpy._core.multiarray import _set_madvise_hugepage
from engine import memory
memory.configure()
_set_madvise_hugepage(False)  # count pages of 4 KiB in both runs
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(100 << 17)  # 100 MiB, under memory.MMAP_THRESHOLD
    a[:] = 1.0
    del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(json.dumps({"again": faults()}))
"""
    configured = _run(code, keep=False)["again"]
    default = _run(code, keep=True)["again"]
    assert isinstance(configured, int) and isinstance(default, int)
    assert configured < 100 and default > 10_000  # glibc's default maps 100 MiB afresh
