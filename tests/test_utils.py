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


def test_cpu_meter_sees_a_busy_process_and_not_itself():
    import subprocess
    import sys
    import time

    meter = utils.CpuMeter()
    if meter.others() is None:
        pytest.skip("no /proc/stat for this process's CPUs (or a cgroup quota below them): nothing is measured")
    end = time.time() + 0.6
    while time.time() < end:  # this process busy: not counted as another's load
        pass
    assert meter.others() < 0.5 + 0.5 * (utils.available_cpus() - 1)  # at most the machine's own background
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)  # the child starts up
        meter.others()
        time.sleep(1.0)
        assert meter.others() >= 0.5  # one process spinning on one CPU
    finally:
        busy.kill()
        busy.wait()


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
