#!/usr/bin/env python3
"""Launch a distributed MXNet job (KVStore over ps-lite): scheduler, servers and workers.

    python tools/launch.py -n 2 -s 2 --launcher local \\
        python -m lcnn_gluon.train --kv-store dist_sync ...
    python tools/launch.py -n 4 -s 2 --launcher ssh -H hosts.txt python -m lcnn_gluon.train ...

Every role runs the same command with the DMLC_* variables set (for servers and
the scheduler, ``import mxnet`` alone runs the server loop), as MXNet's own
launcher does. ``local`` binds every role to 127.0.0.1 only; ``ssh`` runs the
scheduler here and servers and workers on the hosts of the hostfile (one per
line, ``[user@]host[:ssh_port]``, used in turn), each binding its own address;
the working directory must exist at the same path on every host.

Each line of output is prefixed with its role. The job ends when the workers
have finished; when any role fails or dies, the others are stopped at once and
the launcher exits non-zero naming the role. A scheduler or server that ends
(even with status 0) while workers still run fails the job after --exit-grace
seconds (workers would wait for it forever). No process is left behind, on
success, failure, Ctrl-C, SIGTERM or SIGHUP; every local role (and every ssh
client) also gets the kernel's parent-death signal, so even a launcher killed
with SIGKILL takes its roles with it (remote ones are stopped when their ssh
connection closes).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

GRACE_S = 30  # how long servers and the scheduler get to exit after the workers finished
EXIT_GRACE_S = 30  # default of --exit-grace: workers left running after a server or the scheduler ended
PR_SET_PDEATHSIG = 1  # prctl(2): signal this process when its parent dies
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
# The remote side of an ssh role: run the command in its own process group and
# stop that group when the ssh connection (our stdin) closes.
REMOTE_WRAPPER = ("exec 3<&0; setsid {cmd} <&- & pid=$!; "
                  "(read _ <&3; kill -TERM -- -$pid 2>/dev/null; sleep 5; "
                  "kill -KILL -- -$pid 2>/dev/null) & watcher=$!; "
                  "wait $pid; rc=$?; kill $watcher 2>/dev/null; exit $rc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("-n", "--num-workers", type=int, required=True)
    parser.add_argument("-s", "--num-servers", type=int, help="default: as many as workers")
    parser.add_argument("--launcher", default="local", choices=["local", "ssh"])
    parser.add_argument("-H", "--hostfile", help="ssh: hosts, one per line")
    parser.add_argument("--host-ip", help="ssh: address of this host that the others reach "
                                          "(default: the one on the route to the first host)")
    parser.add_argument("--ssh-options", default="", help="extra options for ssh, e.g. '-i key'")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set a variable for every role (repeatable)")
    parser.add_argument("--port", type=int, default=0, help="scheduler port (default: a free one)")
    parser.add_argument("--verbose", action="store_true", help="PS_VERBOSE=1: log each bind")
    parser.add_argument("--exit-grace", type=float, default=EXIT_GRACE_S,
                        help="seconds the workers may still run after a server or the scheduler ended")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command every role runs")
    args = parser.parse_args(argv)
    args.num_servers = args.num_workers if args.num_servers is None else args.num_servers
    if not args.command:
        parser.error("no command given")
    if args.num_workers < 1 or args.num_servers < 1:
        parser.error(f"-n {args.num_workers} -s {args.num_servers}: need at least one of each")
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: must be NAME=VALUE")
    if args.launcher == "ssh":
        if not args.hostfile:
            parser.error("--launcher ssh needs -H/--hostfile")
        try:
            args.hosts = read_hostfile(args.hostfile)
        except (OSError, ValueError) as e:
            parser.error(str(e))
    return args


def read_hostfile(path: str) -> List[dict]:
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            target, _, port = line.partition(":")
            hosts.append(dict(target=target, port=port or "22",
                              address=socket.gethostbyname(target.rpartition("@")[2])))
    if not hosts:
        raise ValueError(f"{path}: no hosts")
    return hosts


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def route_ip(address: str) -> str:
    """The local address used to reach ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return s.getsockname()[0]


def _die_with(launcher_pid: int):
    """A ``preexec_fn`` giving the child SIGKILL when the launcher dies (Linux), even by SIGKILL."""
    def arm() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != launcher_pid:  # the launcher died before the signal was armed
            os._exit(1)
    return arm


class Role:
    """One process of the job, started locally or over ssh."""

    def __init__(self, name: str, argv: List[str]):
        self.name, self.argv, self.proc = name, argv, None

    def start(self, env: Dict[str, str], out_lock: threading.Lock) -> None:
        self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with(os.getpid()))
        threading.Thread(target=self._forward, args=(out_lock,), daemon=True).start()

    def _forward(self, lock: threading.Lock) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            with lock:
                sys.stdout.write(f"[{self.name}] {raw.decode(errors='replace')}")
                sys.stdout.flush()

    def stop(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def build_roles(args: argparse.Namespace) -> tuple:
    """The roles and the environment they share."""
    local = args.launcher == "local"
    root = "127.0.0.1" if local else (args.host_ip or route_ip(args.hosts[0]["address"]))
    common = {"DMLC_PS_ROOT_URI": root, "DMLC_PS_ROOT_PORT": str(args.port or free_port(root)),
              "DMLC_NUM_SERVER": str(args.num_servers), "DMLC_NUM_WORKER": str(args.num_workers)}
    common.update(item.split("=", 1) for item in args.env)
    if args.verbose:
        common["PS_VERBOSE"] = "1"
    names = ["scheduler"] + [f"server {i}" for i in range(args.num_servers)] + \
            [f"worker {i}" for i in range(args.num_workers)]
    roles = []
    for i, name in enumerate(names):
        role_env = dict(common, DMLC_ROLE=name.split()[0])
        if local or name == "scheduler":
            role_env["DMLC_NODE_HOST"] = root
            roles.append((Role(name, list(args.command)), role_env))
            continue
        host = args.hosts[(i - 1) % len(args.hosts)]
        role_env["DMLC_NODE_HOST"] = host["address"]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(role_env.items()))
        remote = (f"cd {shlex.quote(os.getcwd())} && export {exports} && "
                  + REMOTE_WRAPPER.format(cmd=shlex.join(args.command)))
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
               "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-p", host["port"],
               *shlex.split(args.ssh_options), host["target"], remote]
        roles.append((Role(f"{name}@{host['target']}", ssh), {}))
    return roles


def describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def supervise(roles: List[Role], exit_grace: float = EXIT_GRACE_S) -> int:
    """Wait for the workers; stop everything at the first failure. Returns the exit status."""
    workers = [r for r in roles if r.name.startswith("worker")]
    finished_at: Optional[float] = None
    gone: Optional[tuple] = None  # (role, time) of the first server/scheduler that ended early
    while True:
        for role in roles:
            code = role.proc.poll()
            if code not in (None, 0):
                print(f"[launch] {role.name} (pid {role.proc.pid}) failed with {describe_exit(code)}; "
                      "stopping the job", flush=True)
                return 1
        if all(r.proc.poll() == 0 for r in roles):
            return 0
        workers_done = all(r.proc.poll() == 0 for r in workers)
        if finished_at is None and workers_done:
            finished_at = time.time()
        if finished_at is not None and time.time() - finished_at > GRACE_S:
            left = ", ".join(r.name for r in roles if r.proc.poll() is None)
            print(f"[launch] workers finished; {left} did not exit within {GRACE_S} s: stopped",
                  flush=True)
            return 0
        if gone is None and not workers_done:
            ended = [r for r in roles if r not in workers and r.proc.poll() == 0]
            gone = (ended[0], time.time()) if ended else None
        if gone is not None and not workers_done and time.time() - gone[1] > exit_grace:
            waiting = ", ".join(r.name for r in workers if r.proc.poll() is None)
            print(f"[launch] {gone[0].name} exited while {waiting} still ran ({exit_grace:g} s ago): "
                  "the workers cannot finish without it; stopping the job", flush=True)
            return 1
        time.sleep(0.1)


def shutdown(roles: List[Role]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for role in roles:
            role.stop(sig)
        deadline = time.time() + wait
        while time.time() < deadline and any(r.proc and r.proc.poll() is None for r in roles):
            time.sleep(0.05)
    for role in roles:  # closing stdin ends remote roles through their ssh connection
        if role.proc and role.proc.stdin:
            role.proc.stdin.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    roles_env = build_roles(args)
    roles = [r for r, _ in roles_env]
    lock = threading.Lock()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    status = 1
    try:
        for role, env in roles_env:
            role.start(dict(os.environ, **env), lock)
        status = supervise(roles, args.exit_grace)
    except KeyboardInterrupt:
        print("[launch] interrupted: stopping the job", flush=True)
        status = 130
    except OSError as e:
        print(f"[launch] cannot start the job: {e}", flush=True)
    finally:
        shutdown(roles)
    return status


if __name__ == "__main__":
    sys.exit(main())
