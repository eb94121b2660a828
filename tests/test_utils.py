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
    monkeypatch.setattr(utils, "free_cpus", lambda sample=0.1: 2.0)  # an idle machine
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


def test_set_threads_leaves_the_cpus_other_processes_keep_busy(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(utils, "available_cpus", lambda: 4)
    try:
        for free, cap, expected in ((4.0, 4, 4), (3.0, 4, 3), (1.2, 4, 1), (0.0, 4, 1), (2.6, 2, 2), (1.4, 2, 1)):
            monkeypatch.setattr(utils, "free_cpus", lambda sample=0.1, f=free: f)
            assert utils.set_threads(cap) == expected == torch.get_num_threads(), (free, cap)
    finally:
        torch.set_num_threads(before)


def test_cpu_meter_counts_other_processes_not_this_one(monkeypatch):
    """Busy time of this process's CPUs (/proc/stat, in ticks) minus this process's own CPU time, over wall time."""
    import types

    clock = {"wall": 100.0, "busy": 0, "own": 0.0}

    def stat(path):
        if path != "/proc/stat":
            return None
        # user nice system idle iowait irq softirq steal: busy = user + nice + system + irq + softirq + steal
        half = clock["busy"] // 2
        return (f"cpu  0 0 0 0 0 0 0 0\ncpu0 {half} 0 0 500 7 0 0 0\ncpu1 {clock['busy'] - half} 0 0 900 0 0 0 0\n"
                f"cpu2 999 0 0 0 0 0 0 0\n")  # not this process's CPU: ignored

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(utils, "_read", stat)
    monkeypatch.setattr(os, "sysconf", lambda name: 100)  # 100 ticks per second
    monkeypatch.setattr(os, "times", lambda: types.SimpleNamespace(user=clock["own"], system=0.0))
    import time

    monkeypatch.setattr(time, "monotonic", lambda: clock["wall"])
    meter = utils.CpuMeter()
    clock.update(wall=102.0, busy=400, own=2.0)  # 2 s: 4 CPU-seconds busy, 2 of them this process's
    assert meter.others() == pytest.approx(1.0)
    clock.update(wall=104.0, busy=800, own=6.0)  # 2 s: 4 CPU-seconds busy, all this process's (2 threads)
    assert meter.others() == pytest.approx(0.0)
    clock.update(wall=104.0)
    assert meter.others() is None  # no time has passed
    monkeypatch.setattr(utils, "_cgroup_quota", lambda: 1.0)  # a quota below the CPUs it can read: not measured
    assert utils.CpuMeter().others() is None


def test_training_gives_threads_back_and_takes_them_again(monkeypatch):
    from metarl.trainer.callbacks import LoadAwareThreads

    before = torch.get_num_threads()
    cb = LoadAwareThreads(2)
    cb.cap, cb.cpus = 2, 2  # a 2-CPU machine, whatever this one is
    state = type("State", (), {"global_step": 7})()
    try:
        torch.set_num_threads(2)
        for others, expected in ((1.0, 1), (0.9, 1), (0.2, 2), (None, 2), (2.0, 1)):
            monkeypatch.setattr(cb.meter, "others", lambda o=others: o)
            cb.on_step_begin(None, state, None)
            assert torch.get_num_threads() == expected, others
    finally:
        torch.set_num_threads(before)
