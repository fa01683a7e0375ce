"""tools/launch.py when roles or the launcher itself go away: no hang, no orphan."""
import os
import re
import signal
import subprocess
import time

import pytest
from conftest import PY, ROOT
from test_distributed import LAUNCH, launch

# Each role prints its pid, then waits (as for its peers) or ends at once.
ONLY_WORKERS_WAIT = ("import os, time; print('pid', os.getpid(), flush=True); "
                     "time.sleep(600 if os.environ['DMLC_ROLE'] == 'worker' else 0)")
ALL_WAIT = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(600)"


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited
        return f.read().split(")")[-1].split()[0] != "Z"


def test_servers_ending_before_the_workers_fail_the_job():
    start = time.time()
    proc = launch("-n", "2", "-s", "1", "--exit-grace", "3", PY, "-c", ONLY_WORKERS_WAIT, check=False,
                  timeout=60)
    assert proc.returncode == 1, proc.stdout
    assert re.search(r"(scheduler|server 0) exited while worker 0, worker 1 still ran", proc.stdout)
    assert time.time() - start < 30
    pids = [int(p) for p in re.findall(r"\[worker \d\] pid (\d+)", proc.stdout)]
    assert len(pids) == 2 and not any(alive(p) for p in pids)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP, signal.SIGTERM])
def test_roles_die_with_the_launcher(sig):
    launcher = subprocess.Popen([PY, LAUNCH, "-n", "2", "-s", "2", PY, "-c", ALL_WAIT],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids = []
    for line in launcher.stdout:
        found = re.search(r"\] pid (\d+)", line)
        if found:
            pids.append(int(found.group(1)))
        if len(pids) == 5:  # scheduler, 2 servers, 2 workers
            break
    assert all(alive(p) for p in pids)
    launcher.send_signal(sig)
    launcher.wait(timeout=30)
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids), f"orphaned roles after {sig.name}"
