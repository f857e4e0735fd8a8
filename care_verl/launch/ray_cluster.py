"""Ray cluster helpers: ``python -m care_verl.launch.ray_cluster {wait,local}``.

``wait``: block until a running cluster has N alive nodes (and G GPUs); used by
``launch/slurm/care.sbatch`` between ``ray start`` and training.

``local``: start an N-node Ray cluster on this machine (one ``ray start --block`` process group per
node, loopback only, free ports, a private temp dir and auth token), run a command against it with
``RAY_ADDRESS`` set, and tear the cluster down again. It rehearses a multi-node launch on one
machine; the multi-node end-to-end test uses :class:`LocalRayCluster` directly::

    python -m care_verl.launch.ray_cluster local --nodes 2 --num-gpus 1 -- \\
        python -m care_verl.launch.train --recipe tiny_cpu --nnodes 2 --gpus-per-node 1 -- ...

On a CPU machine the GPUs are logical (a resource named ``GPU`` that verl's placement needs).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


def wait_for_nodes(address: str, nodes: int, gpus: float = 0, timeout: float = 600, poll: float = 2.0) -> list[dict]:
    """Wait until the cluster at ``address`` has ``nodes`` alive nodes and ``gpus`` GPUs in total.

    Returns the alive nodes (``ray.nodes()`` entries); raises TimeoutError with what it saw.
    """
    import ray

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
            break
        except Exception as exc:  # the head may not be up yet
            last_error = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray cluster answered at {address} within {timeout:.0f}s: {exc}") from exc
            time.sleep(poll)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            total_gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in alive)
            if len(alive) >= nodes and total_gpus >= gpus:
                return alive
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Ray cluster at {address}: {len(alive)}/{nodes} nodes and {total_gpus:g}/{gpus:g} GPUs "
                    f"after {timeout:.0f}s (last connect error: {last_error})"
                )
            time.sleep(poll)
    finally:
        ray.shutdown()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _ray_bin() -> str:
    here = Path(sys.executable).parent / "ray"
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


class LocalRayCluster:
    """An N-node Ray cluster on this machine, for tests and rehearsals. Use as a context manager.

    Each node is a ``ray start --block`` in its own process group; :meth:`stop` ends exactly those
    groups (never ``ray stop``, which would end every Ray cluster of this user on the machine).
    """

    def __init__(
        self,
        nodes: int = 2,
        num_cpus: int = 8,
        num_gpus: int = 1,
        host: str = "127.0.0.1",
        temp_dir: str | Path | None = None,
        env: dict[str, str] | None = None,
        log_dir: str | Path | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.nodes, self.num_cpus, self.num_gpus, self.host = nodes, num_cpus, num_gpus, host
        self._own_temp = temp_dir is None
        # Ray's socket paths must stay short (AF_UNIX limit), so the default lives directly in /tmp.
        self.temp_dir = Path(temp_dir) if temp_dir else Path(tempfile.mkdtemp(prefix="carelrc-", dir="/tmp"))
        self.log_dir = Path(log_dir) if log_dir else self.temp_dir / "logs"
        # Ray puts AF_UNIX sockets (<= 107 bytes) at <temp>/ray/session_<date>_<pid>/sockets/plasma_store.
        if len(str(self.temp_dir / "ray")) > 40:
            raise ValueError(f"temp_dir {self.temp_dir} is too long for Ray's socket paths; use a short one under /tmp")
        self.env = dict(os.environ if env is None else env)
        # A private token: the cluster accepts only clients started with this environment.
        self.env.setdefault("RAY_AUTH_MODE", "token")
        self.env.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
        self.env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.env.pop("RAY_ADDRESS", None)
        self.address: str | None = None
        self.procs: list[subprocess.Popen] = []

    def client_env(self) -> dict[str, str]:
        """Environment for a process that should use this cluster (``RAY_ADDRESS`` + auth)."""
        if self.address is None:
            raise RuntimeError("cluster not started")
        env = dict(self.env)
        env["RAY_ADDRESS"] = self.address
        return env

    def _start_node(self, args: list[str], name: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "w")
        cmd = [_ray_bin(), "start", "--block", "--disable-usage-stats", f"--node-ip-address={self.host}",
               f"--num-cpus={self.num_cpus}", f"--num-gpus={self.num_gpus}",
               "--min-worker-port=0", "--max-worker-port=0", *args]
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)

    def start(self, timeout: float = 180) -> str:
        gcs, client, dashboard, *agents = free_ports(3 + 2 * self.nodes, self.host)
        self.address = f"{self.host}:{gcs}"
        self._start_node(
            ["--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--include-dashboard=false",
             f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agents[0]}",
             f"--metrics-export-port={agents[1]}", f"--temp-dir={self.temp_dir / 'ray'}"],
            "node0-head",
        )
        self._wait(1, timeout)
        for i in range(1, self.nodes):
            self._start_node(
                [f"--address={self.address}", f"--dashboard-agent-listen-port={agents[2 * i]}",
                 f"--metrics-export-port={agents[2 * i + 1]}"],
                f"node{i}",
            )
        self._wait(self.nodes, timeout)
        return self.address

    def _wait(self, nodes: int, timeout: float) -> None:
        """Wait for ``nodes`` nodes in a helper process, giving up as soon as a node process dies."""
        code = (
            "from care_verl.launch.ray_cluster import wait_for_nodes; "
            f"wait_for_nodes({self.address!r}, {nodes}, timeout={timeout})"
        )
        waiter = subprocess.Popen([sys.executable, "-c", code], env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout + 60
        try:
            while waiter.poll() is None:
                dead = [p for p in self.procs if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    reason = f"a `ray start` exited with {dead[0].returncode}" if dead else "timed out"
                    raise RuntimeError(f"local Ray cluster did not reach {nodes} node(s): {reason}; logs in {self.log_dir}")
                time.sleep(0.5)
            _, err = waiter.communicate()
            if waiter.returncode != 0:
                raise RuntimeError(f"local Ray cluster did not reach {nodes} node(s): {err[-2000:]}")
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()

    def stop(self, grace: float = 5, remove_temp: bool = True) -> None:
        """End every node's process group: SIGTERM, then SIGKILL for whatever is left after ``grace`` s.

        The temp dir (Ray's session files, and the node logs unless ``log_dir`` was given) is
        removed if this object created it and ``remove_temp``.

        (``ray start --block`` has no SIGTERM handler and gcs_server/raylet take their time, so the
        whole group is signalled and, being a throwaway cluster, not waited on for long.)
        """
        for proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(p) for p in self.procs):
            time.sleep(0.2)
        for proc in reversed(self.procs):
            _signal_group(proc, signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        if self._own_temp and remove_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        try:
            self.start()
        except BaseException:
            self.stop(remove_temp=False)  # keep the logs the error message points to
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the `ray start` process itself once it exits
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this Popen created (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    parser = argparse.ArgumentParser(prog="python -m care_verl.launch.ray_cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    wait = sub.add_parser("wait", help="wait until a running cluster has N nodes and G GPUs")
    wait.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="HOST:PORT of the head (default: $RAY_ADDRESS)")
    wait.add_argument("--nodes", type=int, required=True)
    wait.add_argument("--gpus", type=float, default=0)
    wait.add_argument("--timeout", type=float, default=600)
    local = sub.add_parser("local", help="run `-- COMMAND...` against a fresh N-node Ray cluster on this machine")
    local.add_argument("--nodes", type=int, default=2)
    local.add_argument("--num-cpus", type=int, default=8, help="logical CPUs per node")
    local.add_argument("--num-gpus", type=int, default=1, help="(logical) GPUs per node")
    args = parser.parse_args(argv)

    if args.cmd == "wait":
        if not args.address:
            parser.error("wait needs --address or RAY_ADDRESS")
        try:
            alive = wait_for_nodes(args.address, args.nodes, args.gpus, args.timeout)
        except TimeoutError as exc:
            print(f"care_verl.launch.ray_cluster: {exc}", file=sys.stderr)
            return 1
        gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in alive)
        print(f"care_verl.launch.ray_cluster: {len(alive)} node(s), {gpus:g} GPU(s) at {args.address}")
        return 0

    if not command:
        parser.error("local needs a command after `--`")
    with LocalRayCluster(args.nodes, args.num_cpus, args.num_gpus) as cluster:
        print(f"care_verl.launch.ray_cluster: {args.nodes}-node cluster at {cluster.address} (temp dir {cluster.temp_dir})",
              file=sys.stderr, flush=True)
        return subprocess.call(command, env=cluster.client_env())


if __name__ == "__main__":
    sys.exit(main())
