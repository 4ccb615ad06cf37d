"""Balance readings shared by the kernels of one user on one machine.

Ten notebooks with auto-refreshing panels on one account should cost the service one
request per interval, not ten. A reading taken by one kernel is written to a small file in
the Jupyter runtime folder; another kernel that may use a reading of some age (a panel's
auto-refresh, ``--cached``, the guard within its TTL) adopts it from there with its true
age instead of asking the service again. Fresh reads (``%rodin_balance`` without ``--cached``)
never look here.

The file holds no key and nothing from which a key can be recovered: an account is named
by HMAC-SHA256(salt, base URL + the client's one-way key fingerprint), the salt random per
file. A missing, corrupt, foreign or stale file is ignored; sharing can only ever save a
request, never fail a read.
A lock file next to it (``fcntl.flock``, where there is one) lets one kernel at a time make
the request the others would make too; waits on it are bounded.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rodin_jupyter.balance.settings import settings
from rodin_jupyter.http.reading import BalanceReading

FILE_NAME = "rodin-jupyter-balances.json"
LOCK_NAME = "rodin-jupyter-balances.lock"
DISABLE_VARIABLE = "RODIN_JUPYTER_SHARED_READINGS"
"""Set to ``0`` to keep every kernel's readings to itself."""
MAX_FILE_BYTES = 64 * 1024
MAX_ACCOUNTS = 32
PUBLISH_EVERY = 1.0
"""An unchanged balance is written at most once a second (a changed one at once)."""
LOCK_POLL = 0.02
KEEP_SECONDS = 3600.0
"""Readings older than this are dropped when the file is next written."""
FORMAT = 1

Account = tuple[str, str]
"""``RodinClient.account``: (base URL, a one-way fingerprint of the key)."""


def runtime_dir() -> Path:
    """Jupyter's runtime folder (``JUPYTER_RUNTIME_DIR``, else jupyter_core's answer), else a
    per-user folder where jupyter_core is not installed."""
    explicit = os.environ.get("JUPYTER_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
        return Path(base) / "rodin-jupyter"
    return Path(jupyter_runtime_dir())


def _private_dir(path: Path) -> bool:
    """The folder exists (made 0700 if need be), is ours, and nobody else can write to it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path)
    except (OSError, RuntimeError):  # HOME=/proc, no home at all, read-only ...
        return False
    if sys.platform == "win32":
        return stat.S_ISDIR(info.st_mode)
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & 0o022)


def _age(entry: dict[str, Any], now_wall: float, now_mono: float) -> float | None:
    """The larger of the wall-clock and monotonic ages (never trust the kinder clock)."""
    wall, mono = entry.get("at"), entry.get("mono")
    if not isinstance(wall, (int, float)) or isinstance(wall, bool) or wall != wall:
        return None
    age = now_wall - float(wall)
    if age < -1.0:  # from the future: a clock that jumped, or a forged file
        return None
    if isinstance(mono, (int, float)) and not isinstance(mono, bool) and 0 <= mono <= now_mono:
        age = max(age, now_mono - float(mono))  # the same boot: both clocks must agree
    return max(0.0, age)


def _balance(entry: dict[str, Any]) -> Decimal | None:
    text = entry.get("balance")
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class SharedReadings:
    """The shared file as one monitor sees it (the monitor owns one per configuration)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._usable: bool | None = None
        self._published: tuple[Decimal, float] | None = None

    @staticmethod
    def enabled() -> bool:
        return os.environ.get(DISABLE_VARIABLE, "1").strip() != "0"

    def _dir(self) -> Path | None:
        if self._folder is None:
            try:
                self._folder = runtime_dir()
            except Exception:  # a broken jupyter config must not break a balance read
                self._usable = False
        if self._usable is None:
            self._usable = self._folder is not None and _private_dir(self._folder)
        return self._folder if self._usable else None

    def _load(self, folder: Path) -> tuple[bytes, dict[str, Any]] | None:
        """(salt, readings) from the file, or None if it is missing or not to be trusted."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(folder / FILE_NAME, flags)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                return None
            if sys.platform != "win32" and (info.st_uid != os.getuid()
                                            or info.st_mode & 0o022):  # others could forge it
                return None
            data = json.loads(os.read(fd, MAX_FILE_BYTES + 1))
            salt = bytes.fromhex(data["salt"])
            readings = data["readings"]
            if data.get("format") != FORMAT or len(salt) < 16 or not isinstance(readings, dict):
                return None
            return salt, readings
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        finally:
            os.close(fd)

    def find(self, account: Account, max_age: float) -> BalanceReading | None:
        """Another process's reading of this account, if no older than ``max_age`` seconds."""
        folder = self._dir() if self.enabled() else None
        loaded = None if folder is None else self._load(folder)
        if loaded is None:
            return None
        salt, readings = loaded
        entry = readings.get(_name(account, salt))
        if not isinstance(entry, dict) or entry.get("pid") == os.getpid():
            return None  # this process's own readings are in its monitor already
        now_wall, now_mono = time.time(), time.monotonic()
        age, balance = _age(entry, now_wall, now_mono), _balance(entry)
        if age is None or balance is None or age > max_age:
            return None
        return BalanceReading(balance, datetime.fromtimestamp(now_wall - age, timezone.utc),
                              monotonic=now_mono - age, account=account)

    def publish(self, account: Account, reading: BalanceReading) -> None:
        """Write ``reading`` for the other kernels; never raises."""
        now = time.monotonic()
        last = self._published
        if last is not None and last[0] == reading.balance and now - last[1] < PUBLISH_EVERY:
            return
        folder = self._dir() if self.enabled() else None
        if folder is None:
            return
        try:
            self._write(folder, account, reading)
            self._published = (reading.balance, now)
        except Exception:  # a full disk or a read-only folder: the reading still counts here
            self._usable = None  # look at the folder again next time

    def _write(self, folder: Path, account: Account, reading: BalanceReading) -> None:
        loaded = self._load(folder)
        salt, readings = loaded if loaded is not None else (secrets.token_bytes(16), {})
        now_wall, now_mono = time.time(), time.monotonic()
        readings = {name: entry for name, entry in readings.items()  # drop what cannot serve
                    if _keep(entry, now_wall, now_mono)}
        age = reading.age()
        readings[_name(account, salt)] = {
            "balance": str(reading.balance), "at": time.time() - age,
            "mono": time.monotonic() - age, "pid": os.getpid(),
        }
        newest = sorted(readings.items(), key=lambda item: _sort_key(item[1]), reverse=True)
        text = json.dumps({"format": FORMAT, "salt": salt.hex(),
                           "readings": dict(newest[:MAX_ACCOUNTS])})
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".rodin-balances-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
                handle.write(text)
            os.replace(temp, folder / FILE_NAME)  # readers see the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    @contextlib.contextmanager
    def one_at_a_time(self, wait: float) -> Iterator[None]:
        """Hold the cross-kernel lock for a refresh, waiting at most ``wait`` seconds for it.

        After the wait the caller goes ahead anyway: a wedged kernel must not stop the others.
        """
        folder = self._dir() if self.enabled() else None
        fd = None
        if folder is not None:
            fd = _lock(folder / LOCK_NAME, wait)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the lock


def _name(account: Account, salt: bytes) -> str:
    """HMAC-SHA256 under the file's salt of the base URL and the key's fingerprint, and the
    unit the balance is in (kernels may differ in ``balance_scale``: a reading in another
    unit is another account's, for sharing)."""
    base, fingerprint = account
    digest = hmac.new(salt, f"{base}\0{fingerprint}".encode("utf-8", "surrogatepass"),
                      "sha256").hexdigest()
    return f"{digest}/{settings.balance.scale.normalize()}"


def _keep(entry: Any, now_wall: float, now_mono: float) -> bool:
    if not isinstance(entry, dict) or _balance(entry) is None:
        return False
    age = _age(entry, now_wall, now_mono)
    return age is not None and age <= KEEP_SECONDS


def _sort_key(entry: Any) -> float:
    at = entry.get("at") if isinstance(entry, dict) else None
    return float(at) if isinstance(at, (int, float)) and at == at else 0.0


def _lock(path: Path, wait: float) -> int | None:
    try:
        import fcntl
    except ImportError:  # Windows: no cross-kernel lock, at worst a request more
        return None
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return None
    give_up = time.monotonic() + max(0.0, wait)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError:
                if time.monotonic() >= give_up:
                    break
                time.sleep(LOCK_POLL)
    except BaseException:  # an interrupt while waiting: no descriptor left behind
        os.close(fd)
        raise
    os.close(fd)
    return None
