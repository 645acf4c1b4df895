"""Beam's portable services as separate processes on loopback ports: the Python job service
(`local_job_service_main`) and an SDK worker pool (`worker_pool_main`), the pair a Flink or Spark
job server and its worker-pool sidecar stand for. The pool starts every worker as the bare
`python` on PATH, so this environment's bin directory goes first; each service gets a port nothing
listens on yet, because gRPC binds with SO_REUSEPORT and a leftover pool would share the port
and serve jobs with its own code."""
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def unused_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not _listening(port):
            return port


@dataclasses.dataclass
class Service:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(module: str, port_flag: str, log: Path, extra_env: Optional[Dict[str, str]] = None,
          args: List[str] = (), timeout: float = 180) -> Service:
    port = unused_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **(extra_env or {})}
    process = subprocess.Popen([sys.executable, "-m", module, f"{port_flag}={port}", *args], env=env,
                               stdout=open(log, "w"), stderr=subprocess.STDOUT)
    service = Service(process, port, log)
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"{module} did not listen on {port}: {service.log_text()[-2000:]}")
        time.sleep(0.5)
    return service


def job_service(directory: Path) -> Service:
    return start("apache_beam.runners.portability.local_job_service_main", "--port", directory / "job_service.log")


def worker_pool(directory: Path, name: str = "worker_pool", extra_env: Optional[Dict[str, str]] = None) -> Service:
    return start("apache_beam.runners.worker.worker_pool_main", "--service_port", directory / f"{name}.log",
                 extra_env)


def portable_profile(jobs: Service, workers: Service) -> dict:
    return {"runner": "PortableRunner", "job_endpoint": jobs.endpoint, "environment_type": "EXTERNAL",
            "environment_config": workers.endpoint}
