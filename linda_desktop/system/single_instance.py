"""One running copy per data folder, and a private channel for a second launch to talk to it.

- ``InstanceLock``: an OS file lock (``flock`` / ``msvcrt.locking``) held for the process
  lifetime. The kernel drops it when the process dies, even on SIGKILL, so there is no stale
  lock to clean up. The descriptor is not inheritable: a browser that outlives us (Chromium
  runs in its own process group) cannot keep the lock.
- ``ControlServer`` / ``send_command``: length-prefixed JSON over ``multiprocessing.connection``
  (an AF_UNIX socket in the private state folder on POSIX, a named pipe on Windows). Both sides
  prove they know a random per-run key (HMAC challenge-response, no pickle anywhere); the key
  and the address are in ``control.json`` (0600) beside the lock.
- ``create_app_mutex``: the named mutex the Windows installer's ``AppMutex`` looks for
  (created by ``InstanceLock.acquire``).

Typical use (tray app and ``linda-desktop run``)::

    got = start_or_connect(paths.state, handler)
    if isinstance(got, ControlClient):
        got.request({"cmd": "show"}); exit
    ...  # we are the primary instance; got.close() on quit
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json
from linda_desktop.base.errors import AlreadyRunning, LindaError, NotRunning
from linda_desktop.base.events import Command
from linda_desktop.base.paths import ensure_private_dir

log = logging.getLogger(__name__)

LOCK_NAME = "instance.lock"  # the same file as AppPaths.lock_file
CONTROL_NAME = "control.json"
SOCKET_NAME = "control.sock"
MUTEX_NAME = "LindaDesktopMutex"

MAX_REQUEST = 1 << 20
MAX_ANSWER = 16 << 20
HANDSHAKE_TIMEOUT = 5.0
_MAGIC = b"LINDA-CTL-1:"
_DENIED = b"DENIED"
_NONCE = 32
# Windows locks one byte far beyond the pid text, so other processes can still read the pid.
_WINDOWS_LOCK_OFFSET = 1 << 30
_UNIX_PATH_MAX = 100  # sun_path is 104 bytes on macOS, 108 on Linux; keep a margin

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlChannelError(LindaError):
    """The running app could not be asked: refused (wrong key), no answer, or a broken reply."""


# --------------------------------------------------------------------------- the lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


class InstanceLock:
    """The single-instance lock. ``acquire()`` is non-blocking; the lock lives until
    ``release()`` or the death of the process. The file is never deleted (deleting lock files
    races with the next locker); its content is the holder's pid, for diagnostics only."""

    def __init__(self, lock_file: Path) -> None:
        self.path = Path(lock_file)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # non-inheritable (PEP 446)
        try:
            if not _try_lock(fd):
                os.close(fd)
                return False
            if os.name == "posix":
                os.fchmod(fd, 0o600)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        create_app_mutex()  # Windows: tell the installer we run; a no-op elsewhere
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        if not self.acquire():
            raise AlreadyRunning("Linda Desktop is already running", fix="Use the running copy (its tray icon)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(lock_file: Path) -> bool:
    """Whether some process holds the lock. Probes by taking and dropping it, so a primary that
    starts in that same instant may fail once: ``start_or_connect`` retries for that reason."""
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)
        return False
    finally:
        os.close(fd)


def holder_pid(lock_file: Path) -> int | None:
    """The pid written by the last holder (may be stale: check ``is_locked`` first)."""
    try:
        text = Path(lock_file).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --------------------------------------------------------------------------- Windows mutex

_mutex_handles: dict[str, int] = {}


def create_app_mutex(name: str = MUTEX_NAME) -> bool:
    """Create the named mutex (session-local and ``Global\\``) that Inno Setup's ``AppMutex``
    checks, and keep it until the process exits. Returns False (and does nothing) off Windows."""
    if sys.platform != "win32":
        return False
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.CreateMutexW.restype = wintypes.HANDLE
    kernel32.CreateMutexW.argtypes = [ctypes.c_void_p, wintypes.BOOL, wintypes.LPCWSTR]
    created = False
    for full_name in (name, "Global\\" + name):
        if full_name in _mutex_handles:  # idempotent: one handle per name for the process
            created = True
            continue
        handle = kernel32.CreateMutexW(None, False, full_name)
        if handle:
            _mutex_handles[full_name] = handle
            created = True
        else:
            log.debug("CreateMutexW(%s) failed: %s", full_name, ctypes.get_last_error())
    return created


# --------------------------------------------------------------------------- handshake


def _mac(authkey: bytes, role: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(authkey, role + server_nonce + client_nonce, hashlib.sha256).digest()


def _recv(conn: Connection, deadline: float, maxlength: int) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not conn.poll(remaining):
        raise TimeoutError("no data in time")
    return conn.recv_bytes(maxlength)


def _server_handshake(conn: Connection, authkey: bytes) -> bool:
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    server_nonce = secrets.token_bytes(_NONCE)
    conn.send_bytes(_MAGIC + server_nonce)
    reply = _recv(conn, deadline, 2 * _NONCE)
    if len(reply) != 2 * _NONCE:
        return False
    mac, client_nonce = reply[:_NONCE], reply[_NONCE:]
    if not hmac.compare_digest(mac, _mac(authkey, b"client", server_nonce, client_nonce)):
        conn.send_bytes(_DENIED)
        return False
    conn.send_bytes(_mac(authkey, b"server", server_nonce, client_nonce))
    return True


def _client_handshake(conn: Connection, authkey: bytes, deadline: float) -> None:
    hello = _recv(conn, deadline, len(_MAGIC) + _NONCE)
    if not hello.startswith(_MAGIC) or len(hello) != len(_MAGIC) + _NONCE:
        raise ControlChannelError("The control channel answered with something that is not Linda Desktop")
    server_nonce = hello[len(_MAGIC):]
    client_nonce = secrets.token_bytes(_NONCE)
    conn.send_bytes(_mac(authkey, b"client", server_nonce, client_nonce) + client_nonce)
    proof = _recv(conn, deadline, _NONCE)
    if proof == _DENIED:
        raise ControlChannelError("The running Linda Desktop refused the request (wrong control key)",
                                  fix="Run the command as the same user, with the same --data-dir")
    if not hmac.compare_digest(proof, _mac(authkey, b"server", server_nonce, client_nonce)):
        raise ControlChannelError("The control channel could not prove it is this user's Linda Desktop")


# --------------------------------------------------------------------------- server


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class ControlServer:
    """Answers JSON requests from other processes of this user on a daemon thread.

    ``handler(request) -> answer`` gets a dict with a string ``"cmd"`` and returns a JSON-able
    dict such as ``{"ok": True, "result": ...}``. It is called on the connection's thread:
    read-only commands (``Command.read_only``: status, backups, show) at once, even while another
    command runs; every other command one at a time. ``{"cmd": "ping"}`` is answered here.
    Nothing a client sends can stop the server:
    bad input gets ``{"ok": False, "error": ...}`` or a closed connection.
    """

    def __init__(self, address: str, authkey: bytes, handler: Handler) -> None:
        if len(authkey) < 16:
            raise ValueError("authkey too short")
        self.address = str(address)
        self.authkey = bytes(authkey)
        self._handler = handler
        self._handler_lock = threading.Lock()
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._cleanup_dir: Path | None = None  # a temp folder we made for a too-long socket path
        self.control_file: Path | None = None  # published on start, removed on close

    @classmethod
    def for_state_dir(cls, state_dir: Path, handler: Handler) -> ControlServer:
        """A server with a fresh address and key that ``start()`` publishes in ``state_dir/control.json``.
        Use only while holding the instance lock."""
        state_dir = ensure_private_dir(Path(state_dir))
        control_file = state_dir / CONTROL_NAME
        control_file.unlink(missing_ok=True)  # a dead instance's; must not be read while we start
        address, temp_dir = _choose_address(state_dir)
        server = cls(address, secrets.token_bytes(32), handler)
        server._cleanup_dir = temp_dir
        server.control_file = control_file
        return server

    def start(self) -> ControlServer:
        if os.name == "posix":
            socket_path = Path(self.address)
            socket_path.unlink(missing_ok=True)  # left by a killed instance; we hold the lock
        self._listener = Listener(self.address, backlog=16)
        if os.name == "posix":
            os.chmod(self.address, 0o600)
        self._thread = threading.Thread(target=self._serve, name="linda-control", daemon=True)
        self._thread.start()
        if self.control_file is not None:
            published = {"address": self.address, "authkey": self.authkey.hex(), "pid": os.getpid()}
            atomic_write_json(self.control_file, published, mode=0o600)
        return self

    def close(self) -> None:
        if self._closed.is_set() or self._listener is None:
            return
        self._closed.set()
        if self.control_file is not None:
            current = read_control_file(self.control_file.parent)
            if current is not None and current.authkey == self.authkey:  # never remove a successor's
                self.control_file.unlink(missing_ok=True)
        try:  # wake the blocking accept()
            Client(self.address).close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._listener.close()
        except OSError:
            pass
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)

    stop = close

    def _serve(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception as exc:  # noqa: BLE001 - a client that hung up mid-connect, EMFILE, ...
                if self._closed.is_set():
                    break
                log.warning("control channel: accept failed: %s", exc)
                time.sleep(0.05)
                continue
            if self._closed.is_set():
                conn.close()
                break
            threading.Thread(target=self._handle, args=(conn,), name="linda-control-conn", daemon=True).start()

    def _handle(self, conn: Connection) -> None:
        """One connection: handshake, one request, one answer. A stalled client only parks this thread."""
        try:
            with conn:
                if not _server_handshake(conn, self.authkey):
                    log.warning("control channel: a client failed authentication")
                    return
                raw = _recv(conn, time.monotonic() + HANDSHAKE_TIMEOUT, MAX_REQUEST)
                conn.send_bytes(json.dumps(self.answer(raw)).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - garbage, hang-ups, oversized frames, timeouts
            log.debug("control channel: dropped a connection: %s", exc.__class__.__name__)

    def answer(self, raw: bytes) -> dict[str, Any]:
        """The answer to one raw request (public so it can be tested without a socket)."""
        try:
            request = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error("bad request: not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error('bad request: expected an object like {"cmd": "status"}')
        if request["cmd"] == Command.PING:
            return {"ok": True, "result": {"pid": os.getpid()}}
        try:
            if _read_only(request["cmd"]):  # never queued behind a long command
                answer = self._handler(request)
            else:
                with self._handler_lock:
                    answer = self._handler(request)
        except LindaError as exc:
            return _error(str(exc))
        except Exception as exc:
            log.exception("control channel: command %r failed", request["cmd"][:40])
            return _error(f"internal error while handling {request['cmd'][:40]!r}: {exc.__class__.__name__}")
        if not isinstance(answer, dict):
            return _error(f"internal error: {request['cmd'][:40]!r} gave no answer object")
        try:
            json.dumps(answer)
        except (TypeError, ValueError):
            return _error(f"internal error: the answer to {request['cmd'][:40]!r} is not JSON")
        return answer


def _read_only(cmd: str) -> bool:
    try:
        return Command(cmd).read_only
    except ValueError:
        return False


def _choose_address(state_dir: Path) -> tuple[str, Path | None]:
    """A fresh address, and a temp folder to remove later if one had to be made."""
    if os.name == "nt":
        return rf"\\.\pipe\LindaDesktop-{secrets.token_hex(16)}", None
    preferred = state_dir / SOCKET_NAME
    if len(os.fsencode(preferred)) <= _UNIX_PATH_MAX:
        return str(preferred), None
    # The state folder is too deep for a socket path: use a private (0700) temp folder instead.
    folder = Path(tempfile.mkdtemp(prefix="linda-desktop-"))
    return str(folder / SOCKET_NAME), folder


def serve_control(state_dir: Path, handler: Handler) -> ControlServer:
    """Start a server on a fresh address with a fresh key and publish both in ``control.json``.
    Call only while holding the instance lock."""
    return ControlServer.for_state_dir(state_dir, handler).start()


# --------------------------------------------------------------------------- client


def send_command(address: str, authkey: bytes, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request and return the answer dict. Raises ``NotRunning`` when nothing listens
    at ``address`` and ``ControlChannelError`` when refused, silent past ``timeout`` or garbled."""
    payload = json.dumps(request).encode("utf-8")
    deadline = time.monotonic() + timeout
    try:
        conn = Client(address)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotRunning("Linda Desktop is not running", fix="Start it, or run the command again") from exc
    except OSError as exc:
        raise ControlChannelError(f"Could not reach the running Linda Desktop: {exc.strerror or exc}") from exc
    try:
        with conn:
            _client_handshake(conn, authkey, deadline)
            conn.send_bytes(payload)
            raw = _recv(conn, deadline, MAX_ANSWER)
    except TimeoutError as exc:
        raise ControlChannelError(f"The running Linda Desktop did not answer within {timeout:g} s",
                                  fix="Wait a moment and try again; if it stays silent, restart it") from exc
    except (EOFError, OSError) as exc:
        raise ControlChannelError("The running Linda Desktop closed the connection without answering") from exc
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlChannelError("The running Linda Desktop sent an answer that is not JSON") from exc
    if not isinstance(answer, dict):
        raise ControlChannelError("The running Linda Desktop sent an answer that is not an object")
    return answer


@dataclass(frozen=True)
class ControlClient:
    """How to reach the running app (read from its ``control.json``)."""

    address: str
    authkey: bytes
    pid: int | None = None

    def request(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return send_command(self.address, self.authkey, request, timeout)


def read_control_file(state_dir: Path) -> ControlClient | None:
    try:
        data: Any = json.loads((Path(state_dir) / CONTROL_NAME).read_text(encoding="utf-8"))
        pid = data.get("pid")
        pid = pid if isinstance(pid, int) else None
        return ControlClient(str(data["address"]), bytes.fromhex(data["authkey"]), pid)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def connect_to_running(state_dir: Path, wait: float = 5.0) -> ControlClient | None:
    """A client for the app running on ``state_dir``, or None when none runs (a ``control.json``
    left by a killed app is ignored: its lock is free). Waits up to ``wait`` seconds for an app
    that holds the lock but has not opened its channel yet; raises ``AlreadyRunning`` if it never does."""
    state_dir = Path(state_dir)
    lock_file = state_dir / LOCK_NAME
    deadline = time.monotonic() + wait
    while True:
        if not is_locked(lock_file):
            return None
        client = read_control_file(state_dir)
        if client is not None:
            try:
                pong = client.request({"cmd": "ping"}, timeout=max(0.5, min(3.0, deadline - time.monotonic())))
                if pong.get("ok"):
                    return client
            except (NotRunning, ControlChannelError) as exc:
                log.debug("control channel not ready: %s", exc.message)
        if time.monotonic() >= deadline:
            pid = holder_pid(lock_file)
            raise AlreadyRunning(
                f"Linda Desktop is already running{f' (pid {pid})' if pid else ''} but does not answer",
                fix="Quit it from its tray icon (or end that process), then try again",
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------- both together


class PrimaryInstance:
    """What the first instance holds until it quits: the lock, the control server, the mutex."""

    def __init__(self, lock: InstanceLock, server: ControlServer) -> None:
        self.lock = lock
        self.server = server

    def close(self) -> None:
        self.server.close()
        self.lock.release()


def become_primary(state_dir: Path, handler: Handler) -> PrimaryInstance | None:
    """Take the lock and open the control channel; None if another instance holds the lock."""
    lock = InstanceLock(Path(state_dir) / LOCK_NAME)
    if not lock.acquire():
        return None
    try:
        server = serve_control(Path(state_dir), handler)
    except BaseException:
        lock.release()
        raise
    return PrimaryInstance(lock, server)


def start_or_connect(state_dir: Path, handler: Handler, wait: float = 5.0) -> PrimaryInstance | ControlClient:
    """Become the primary instance, or get a client for the one already running."""
    deadline = time.monotonic() + wait
    while True:
        primary = become_primary(state_dir, handler)
        if primary is not None:
            return primary
        client = connect_to_running(state_dir, wait=max(0.0, deadline - time.monotonic()))
        if client is not None:
            return client
        # The lock was free when probed: the other copy just quit. Try again.
        if time.monotonic() >= deadline:
            raise AlreadyRunning("Linda Desktop is starting or stopping in another process",
                                 fix="Try again in a few seconds")
        time.sleep(0.05)
