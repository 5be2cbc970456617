"""Thread counts follow the cores this process may use: its CPU affinity,
capped by a cgroup CPU quota (a Kubernetes limit), never below 1; and each
service's "0 = from the host" settings resolve to sensible sizes on a 2-core
laptop, a 16-core server and a GPU host, while an explicit setting wins."""
from __future__ import annotations

import os

import pytest

from common.cores import host_cores
from services.asr.__main__ import Settings as AsrSettings, Sizes, resolve_sizes
from services.rag.__main__ import resolve_threads as rag_threads


def test_host_cores_is_the_affinity_when_there_is_no_quota(tmp_path) -> None:
    assert host_cores(tmp_path / "missing") == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert host_cores(tmp_path / "cpu.max") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("cpu_max, cap", [("100000 100000", 1), ("150000 100000", 2), ("50000 100000", 1)])
def test_a_cgroup_quota_caps_the_cores(tmp_path, cpu_max, cap) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert host_cores(tmp_path / "cpu.max") == min(cap, len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("cores, settings, sizes", [
    (2, {}, Sizes(threads=1, num_workers=2, interim_workers=1, interim_batch=1)),   # this laptop: as measured
    (1, {}, Sizes(threads=1, num_workers=2, interim_workers=1, interim_batch=1)),
    (16, {}, Sizes(threads=1, num_workers=16, interim_workers=4, interim_batch=1)),
    (16, {"num_workers": 4}, Sizes(threads=4, num_workers=4, interim_workers=4, interim_batch=1)),
    (8, {"threads": 2, "num_workers": 3, "interim_workers": 1, "interim_batch": 4},
     Sizes(2, 3, 1, 4)),                                                   # explicit wins
    (8, {"interim_nice": 0, "num_workers": 2}, Sizes(4, 2, 1, 1)),       # shared model: a worker stays free
    (8, {"device": "cuda"}, Sizes(threads=4, num_workers=2, interim_workers=1, interim_batch=8)),
])
def test_asr_sizes_from_the_host(cores, settings, sizes) -> None:
    assert resolve_sizes(AsrSettings(**settings), cores) == sizes


def test_rag_threads_from_the_host() -> None:
    assert [rag_threads(0, c) for c in (1, 2, 16)] == [1, 2, 4]
    assert rag_threads(3, 16) == 3
