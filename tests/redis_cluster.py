"""A throwaway 3-master Redis Cluster on loopback ports, for the tests that run on a cluster.

Started from ``redis-server --cluster-enabled yes`` in a temporary directory and joined with
``redis-cli --cluster create``; ``stop`` kills the servers and removes the directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from sandbox.runner import free_port

MASTERS = 3


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisCluster:
    def __init__(self, masters: int = MASTERS) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for a Redis Cluster")
        self.dir = Path(tempfile.mkdtemp(prefix="payrelay-cluster-"))
        self.ports = self._ports(masters)
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for port in self.ports:
                node_dir = self.dir / str(port)
                node_dir.mkdir()
                self.processes.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                     "--save", "", "--appendonly", "no", "--dir", str(node_dir)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            self._wait(lambda: all(_answers(p) for p in self.ports), "the cluster nodes did not start")
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
            )
            self._wait(self._ok, "the cluster did not become ok")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _ports(count: int) -> list[int]:
        """Free ports whose cluster bus ports (+10000) are free too."""
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port + 10000 < 65536 and port not in ports:
                with socket.socket() as bus:
                    try:
                        bus.bind(("127.0.0.1", port + 10000))
                    except OSError:
                        continue
                ports.append(port)
        return ports

    @staticmethod
    def _wait(ready: object, message: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError(message)
            time.sleep(0.05)

    def _ok(self) -> bool:
        for port in self.ports:
            with redis.Redis(port=port) as node:
                info = node.cluster("INFO")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != len(self.ports):
                    return False
        return True

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def flush(self) -> None:
        for port in self.ports:
            with redis.Redis(port=port) as node:
                node.flushall()

    def node_of_slot(self) -> dict[int, int]:
        """slot → the port of the master serving it."""
        with redis.Redis(port=self.ports[0]) as node:
            ranges = node.execute_command("CLUSTER SLOTS")
        owner: dict[int, int] = {}
        for start, end, master, *_ in ranges:
            for slot in range(int(start), int(end) + 1):
                owner[slot] = int(master[1])
        return owner

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
