"""Process-level settings (metarl.utils): the thread count never exceeds the CPUs a process may use."""
from __future__ import annotations

import os

import pytest
import torch

from metarl import utils


def files(mapping):
    return lambda path: mapping.get(path)


@pytest.mark.parametrize("mapping, expected", [
    ({}, None),                                                                  # no cgroup files
    ({"/sys/fs/cgroup/cpu.max": "max 100000\n"}, None),                          # v2, no quota
    ({"/sys/fs/cgroup/cpu.max": "150000 100000\n"}, 1.5),                        # v2, 1.5 CPUs
    ({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n"}, None),                     # v1, no quota
    ({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n",
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 0.5),                 # v1, half a CPU
    ({"/sys/fs/cgroup/cpu.max": "garbage"}, None),                               # unreadable: no quota
])
def test_cgroup_quota(monkeypatch, mapping, expected):
    monkeypatch.setattr(utils, "_read", files(mapping))
    assert utils._cgroup_quota() == expected


def test_available_cpus_is_the_affinity_lowered_to_the_quota_rounded_up(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(utils, "_read", files({}))
    assert utils.available_cpus() == 4
    monkeypatch.setattr(utils, "_read", files({"/sys/fs/cgroup/cpu.max": "150000 100000"}))
    assert utils.available_cpus() == 2
    monkeypatch.setattr(utils, "_read", files({"/sys/fs/cgroup/cpu.max": "10000 100000"}))
    assert utils.available_cpus() == 1


def test_set_threads_caps_at_the_available_cpus_and_zero_leaves_them(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        monkeypatch.setattr(utils, "available_cpus", lambda: 1)
        utils.set_threads(8)
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(utils, "available_cpus", lambda: 2)
        utils.set_threads(2)
        assert torch.get_num_threads() == 2
        utils.set_threads(0)
        utils.set_threads(None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
