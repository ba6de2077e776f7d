"""A real Airflow 3 CeleryExecutor cluster as plain processes, no Docker: ``make cluster``.

api-server, scheduler, dag-processor and two Celery workers, one on queue ``default`` (listing,
parse, load) and one on queue ``gpu`` (OCR, concurrency 1: one GPU). Metadata goes to its own
PostgreSQL database, the broker is Redis. Each worker reports its own hostname to Airflow
(``[core] hostname_callable`` reads ``DEEPOCR_WORKER_HOSTNAME``), so ``task_instance.hostname``
says where every task ran. ``docker-compose.yml`` has the same topology and settings
(``tests/test_docker_compose.py`` checks them against :data:`TOPOLOGY` and :func:`airflow_env`).

Every process is started in its own session (``setsid``) and recorded in a PID file with its start
time; :meth:`Cluster.stop` and :meth:`Cluster.kill` signal every process of those sessions and
nothing else: a worker's task processes too, even once a ``kill -9`` of the worker left them
orphaned (they keep the session; Airflow's supervisor only gives them their own process group).

The api-server listens on 127.0.0.1 only, with one user, ``admin``, whose password Airflow
generates at the first start (printed by ``start``; kept in ``.cluster/airflow/
simple_auth_manager_passwords.json.generated``). ``start`` writes ``.cluster/airflow.env``: source it
and the ``airflow`` CLI talks to this cluster (``airflow dags list``, ``airflow dags trigger``).

Command line (what ``make cluster`` / ``make cluster-stop`` run)::

    python -m airflow_provider_deepocr.testing.cluster start   [--home DIR] [--port 8080]
    python -m airflow_provider_deepocr.testing.cluster stop    [--home DIR]
    python -m airflow_provider_deepocr.testing.cluster restart gpu|default   # one worker, whole tree
    python -m airflow_provider_deepocr.testing.cluster kill    gpu|default   # SIGKILL, whole tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HOME = REPO / ".cluster"
PG = "postgres@127.0.0.1:5432"

#: What docker-compose.yml must match: the executor, the workers and their queues, the GPU pool.
TOPOLOGY: dict[str, Any] = {
    "executor": "CeleryExecutor",
    "workers": {
        "default": {"queues": "default", "concurrency": 4},
        "gpu": {"queues": "gpu", "concurrency": 1},
    },
    # the OCR task's routing, as the example DAGs read it
    "dag_env": {"DEEPOCR_OCR_QUEUE": "gpu", "DEEPOCR_GPU_POOL": "deepocr_gpu"},
    "pools": {"deepocr_gpu": 1},  # one slot per GPU worker
}

#: Settings every process shares whatever the deployment (docker-compose.yml sets the same).
SHARED_SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": TOPOLOGY["executor"],
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__AUTH_MANAGER": (
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
    ),
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_provider_deepocr.testing.cluster.worker_hostname",
    # a lost worker's task is failed (then retried) after this; Airflow's default is 300 s
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    **TOPOLOGY["dag_env"],
}


def worker_hostname() -> str:
    """``[core] hostname_callable``: the worker's own name (``DEEPOCR_WORKER_HOSTNAME``), else the
    machine's, so two workers on one machine are told apart in ``task_instance.hostname``."""
    return os.environ.get("DEEPOCR_WORKER_HOSTNAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; ``RuntimeError`` saying why when
    ``proc`` exits first or ``timeout`` seconds pass (then ``proc`` is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited at start (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class ClusterConfig:
    """Where one cluster keeps its state and which ports, databases and Redis db it uses."""

    home: Path = DEFAULT_HOME
    api_port: int = 8080
    api_host: str = "127.0.0.1"  # patient images behind the review plugin: loopback unless asked
    metadata_db: str = "deepocr_airflow"
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_server_ports: dict[str, int] = field(default_factory=lambda: {"default": 8793, "gpu": 8794})
    dags_folder: Path = REPO / "dags"
    heartbeat_timeout_s: int = 60
    env: dict[str, str] = field(default_factory=dict)  # more (DEEPOCR_* for the DAGs)
    # LocalExecutor: no Celery workers, the scheduler runs `parallelism` tasks itself (bench/scale.py)
    executor: str = TOPOLOGY["executor"]
    parallelism: int = 32
    pools: dict[str, int] = field(default_factory=lambda: dict(TOPOLOGY["pools"]))

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def pid_file(self) -> Path:
        return self.home / "cluster.pids.json"

    @property
    def env_file(self) -> Path:
        """``source`` it and the ``airflow`` CLI reaches this cluster."""
        return self.home / "airflow.env"

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"


def airflow_env(cfg: ClusterConfig) -> dict[str, str]:
    """The environment of every cluster process (the AIRFLOW__* part is what docker-compose sets)."""
    meta = f"postgresql+psycopg2://{PG}/{cfg.metadata_db}"
    return {
        **SHARED_SETTINGS,
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
        "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{PG}/{cfg.metadata_db}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{cfg.api_port}/execution/",
        "AIRFLOW__API__PORT": str(cfg.api_port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "deepocr-local-cluster",  # shared by every process
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(cfg.heartbeat_timeout_s),
        # one admin; Airflow generates the password into the file at the api-server's first start
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(cfg.password_file),
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW__CORE__EXECUTOR": cfg.executor,
        "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism),
        **cfg.env,
    }


def _airflow() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def worker_name(worker: str) -> str:
    """The hostname a worker reports (``task_instance.hostname``)."""
    return f"deepocr-{worker}-worker"


def process_commands(cfg: ClusterConfig) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each process's command line and its own environment (on top of :func:`airflow_env`)."""
    af = _airflow()
    procs: dict[str, tuple[list[str], dict[str, str]]] = {
        "api-server": ([af, "api-server", "--host", cfg.api_host, "--port", str(cfg.api_port)], {}),
        "scheduler": ([af, "scheduler"], {}),
        "dag-processor": ([af, "dag-processor"], {}),
    }
    if cfg.executor != "CeleryExecutor":
        return procs
    for name, w in TOPOLOGY["workers"].items():
        host = worker_name(name)
        cmd = [
            af,
            "celery",
            "worker",
            "--queues",
            w["queues"],
            "--concurrency",
            str(w["concurrency"]),
            "--celery-hostname",
            f"{host}@%h",
            "--skip-serve-logs",
        ]
        env = {
            "DEEPOCR_WORKER_HOSTNAME": host,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(cfg.log_server_ports[name]),
        }
        procs[f"worker-{name}"] = (cmd, env)
    return procs


def _psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def free_redis_db(host: str = "127.0.0.1", port: int = 6379, skip: int = 0) -> int:
    """The first empty Redis database number other than ``skip`` (``make cluster`` uses 0), so a
    second cluster on the machine (another worktree's test run) gets its own broker keys."""
    for db in range(16):
        out = subprocess.run(
            ["redis-cli", "-h", host, "-p", str(port), "-n", str(db), "DBSIZE"],
            capture_output=True,
            text=True,
            check=True,
        )
        if db != skip and out.stdout.strip() == "0":
            return db
    raise RuntimeError("no empty Redis database left on 127.0.0.1:6379")


def ensure_database(name: str, fresh: bool = False) -> None:
    """Create PostgreSQL database ``name`` (dropped first when ``fresh``)."""
    if fresh:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        _psql(f'CREATE DATABASE "{name}"')


class Cluster:
    """Start, wait for, kill and stop the cluster's processes."""

    def __init__(self, cfg: ClusterConfig | None = None) -> None:
        self.cfg = cfg or ClusterConfig()
        self.env = {**os.environ, **airflow_env(self.cfg)}
        self.commands = process_commands(self.cfg)

    # -- pids --------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """The recorded processes that are still the ones this cluster started: each PID is
        stored with its process's start time, so a PID the system gave to another program since
        (after a reboot, say) is never signalled."""
        return {
            name: int(pid)
            for name, (pid, started) in self._recorded().items()
            if _start_time(int(pid)) == started
        }

    def _recorded(self) -> dict[str, list[Any]]:
        """``name -> [pid, start time]`` as the PID file holds them, gone or not."""
        return json.loads(self.cfg.pid_file.read_text()) if self.cfg.pid_file.exists() else {}

    def _record(self, name: str, pid: int) -> None:
        recorded = self._recorded()
        recorded[name] = [pid, _start_time(pid)]
        self.cfg.pid_file.write_text(json.dumps(recorded, indent=1))

    # -- start -------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(
            [_airflow(), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if out.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {out.stderr[-2000:]}")
        return out.stdout

    def init(self, fresh: bool = False) -> None:
        """The metadata database (migrated) and the GPU pool."""
        (self.cfg.home / "logs").mkdir(parents=True, exist_ok=True)
        self.cfg.airflow_home.mkdir(parents=True, exist_ok=True)
        ensure_database(self.cfg.metadata_db, fresh=fresh)
        self.write_env_file()
        self.airflow("db", "migrate", timeout=600)
        for pool, slots in self.cfg.pools.items():
            self.airflow("pools", "set", pool, str(slots), "GPU workers")

    def write_env_file(self) -> Path:
        """``export`` lines of every cluster setting: ``source`` the file and the ``airflow`` CLI
        (``dags list``, ``dags trigger``, ``backfill create``) talks to this cluster."""
        import shlex

        env = airflow_env(self.cfg)
        lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        self.cfg.env_file.write_text(
            "# source me: the airflow CLI then reaches this cluster\n" + "\n".join(lines) + "\n"
        )
        return self.cfg.env_file

    def admin_password(self) -> str | None:
        """The generated password of user ``admin`` (None before the api-server's first start)."""
        try:
            return str(json.loads(self.cfg.password_file.read_text())["admin"])
        except (OSError, ValueError, KeyError):
            return None

    def start_process(self, name: str) -> int:
        cmd, extra = self.commands[name]
        logf = open(self.cfg.log(name), "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            cmd,
            env={**self.env, **extra},
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.cfg.home,
        )
        logf.close()
        self._record(name, proc.pid)
        return proc.pid

    def start(self, fresh: bool = False, timeout: float = 180) -> None:
        if any(_alive(p) for p in self.pids().values()):
            raise RuntimeError(f"a cluster is already running (PIDs in {self.cfg.pid_file}); stop it first")
        self.cfg.pid_file.unlink(missing_ok=True)
        self.init(fresh=fresh)
        for name in self.commands:
            self.start_process(name)
        self.wait_ready(timeout=timeout)

    # -- readiness ---------------------------------------------------------------------------
    def api_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.cfg.api_port}/api/v2/monitor/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (local)
                return bool(r.status == 200)
        except OSError:
            return False

    def worker_ready(self, name: str, since: int = 0) -> bool:
        """The worker's log says ``ready.`` after byte offset ``since``."""
        path = self.cfg.log(f"worker-{name}")
        if not path.exists():
            return False
        with open(path, "rb") as f:
            f.seek(since)
            return b" ready." in f.read()

    def wait_ready(self, timeout: float = 180, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        workers = names or (list(TOPOLOGY["workers"]) if self.cfg.executor == "CeleryExecutor" else [])
        while time.monotonic() < deadline:
            live = self.pids()
            dead = [n for n in self._recorded() if n not in live or not _alive(live[n])]
            if dead:
                raise RuntimeError(f"cluster process(es) exited: {dead}; see {self.cfg.home / 'logs'}")
            if self.api_ready() and all(self.worker_ready(w) for w in workers):
                return
            time.sleep(1)
        raise TimeoutError(f"cluster not ready after {timeout:.0f}s; see {self.cfg.home / 'logs'}")

    def restart_worker(self, name: str, timeout: float = 120) -> None:
        """Start worker ``name`` again (its old session killed first, orphans included)."""
        self.kill(f"worker-{name}")
        path = self.cfg.log(f"worker-{name}")
        offset = path.stat().st_size if path.exists() else 0
        self.start_process(f"worker-{name}")
        deadline = time.monotonic() + timeout
        while not self.worker_ready(name, since=offset):
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name} not ready after {timeout:.0f}s")
            time.sleep(0.5)

    # -- stop --------------------------------------------------------------------------------
    def members(self, name: str) -> list[Any]:
        """Every live process of ``name``'s session: the recorded leader and all it started, those
        a ``kill -9`` of the leader orphaned included."""
        rec = self._recorded().get(name)
        return _session(int(rec[0]), float(rec[1] or 0)) if rec else []

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of ``name``'s session; returns the PIDs signalled."""
        procs = self.members(name)
        for p in procs:
            _signal(p, sig)
        return [p.pid for p in procs]

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every recorded session, SIGKILL what is left after ``timeout``."""
        trees = {name: self.members(name) for name in self._recorded()}
        for procs in trees.values():
            for p in procs:
                _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        left = [p for procs in trees.values() for p in procs]
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = [p for p in left if p.is_running() and p.status() != "zombie"]
        for p in left:
            _signal(p, signal.SIGKILL)
        self.cfg.pid_file.unlink(missing_ok=True)


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session(leader: int, started: float) -> list[Any]:
    """Live processes of the session that ``leader`` opened at ``started`` (the recorded start time).

    Membership is the session id, which a task process keeps when a ``kill -9`` of its worker
    reparents it to init (Airflow's supervisor gives it only its own process group). The kernel
    does not hand out a PID while a session still carries it as its id, so the id cannot be
    reused while any member lives; and if a process holds the leader's PID with another start
    time, the PID was reused after the session ended: nothing is ours. (Processes are not told
    apart by their environment: setproctitle, which Celery and Airflow call, overwrites what
    /proc shows of it.)"""
    import psutil

    holder = _start_time(leader)
    if holder is not None and holder != started:
        return []
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == leader and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def _signal(p: Any, sig: int) -> None:
    import psutil

    try:
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m airflow_provider_deepocr.testing.cluster")
    ap.add_argument("action", choices=["start", "stop", "status", "restart", "kill"])
    ap.add_argument(
        "worker", nargs="?", choices=sorted(TOPOLOGY["workers"]), help="restart/kill: which worker"
    )
    ap.add_argument("--home", type=Path, default=DEFAULT_HOME)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--fresh", action="store_true", help="drop the metadata database first")
    args = ap.parse_args(argv)
    home = args.home.resolve()
    cfg = ClusterConfig(
        home=home,
        api_port=args.port,
        env={
            "DEEPOCR_ARCHIVE_URI": os.environ.get("DEEPOCR_ARCHIVE_URI", str(home / "archive")),
            "DEEPOCR_WORK_URI": os.environ.get("DEEPOCR_WORK_URI", str(home / "work")),
            "DEEPOCR_WAREHOUSE": os.environ.get("DEEPOCR_WAREHOUSE", f"sqlite:///{home / 'warehouse.db'}"),
            "DEEPOCR_ENGINE": os.environ.get("DEEPOCR_ENGINE", "rapidocr"),
        },
    )
    cluster = Cluster(cfg)
    if args.action == "stop":
        pids = cluster.pids()
        cluster.stop()
        print(f"stopped {len(pids)} process trees: {pids}")
        return 0
    if args.action in ("restart", "kill"):
        if args.worker is None:
            ap.error(f"{args.action} needs a worker: {', '.join(sorted(TOPOLOGY['workers']))}")
        killed = cluster.kill(f"worker-{args.worker}")
        print(f"killed worker {args.worker}: {len(killed)} process(es) {killed}")
        if args.action == "restart":
            cluster.restart_worker(args.worker)
            print(f"worker {args.worker} ready again (log {cfg.log('worker-' + args.worker)})")
        return 0
    if args.action == "status":
        live = cluster.pids()
        print(
            json.dumps(
                {
                    n: {"pid": r[0], "alive": n in live and _alive(live[n])}
                    for n, r in cluster._recorded().items()
                }
            )
        )
        return 0
    if shutil.which("psql") is None:
        print("psql not found: the cluster needs PostgreSQL on 127.0.0.1:5432", file=sys.stderr)
        return 3
    t0 = time.monotonic()
    cluster.start(fresh=args.fresh)
    print(
        f"cluster ready in {time.monotonic() - t0:.0f}s: http://{cfg.api_host}:{cfg.api_port} "
        f"(user admin, password {cluster.admin_password()}; metadata db {cfg.metadata_db}, "
        f"broker {cfg.redis_url}, logs {home / 'logs'})\n"
        f"airflow CLI against it: source {cfg.env_file} && airflow dags list\n"
        "restart one worker: python -m airflow_provider_deepocr.testing.cluster restart gpu; "
        "stop: make cluster-stop"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
