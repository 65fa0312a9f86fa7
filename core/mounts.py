"""Building blocks for storage plugins that mount a filesystem on each host.

* :func:`read_mountinfo` and :func:`probe_mount` tell whether a path is a
  mount point, what is mounted there, and whether a FUSE mount is stale (its
  daemon died, so ``stat`` fails with ``ENOTCONN``).
* :func:`run_command` runs a mount or unmount command as an argv list with a
  timeout and an environment of the caller's choice, and masks the values of
  secret-named variables of that environment in what the command printed.
* :class:`HostLock` lets one process per host mount while the others wait,
  and reports to each waiter the outcome of the attempt it waited for.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_launcher.errors import ConfigError, ForgeLauncherError, UserError
from forge_launcher.secrets import MASK, is_secret_name

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
#: Directory of the per-host lock files. It is fixed rather than taken from
#: ``TMPDIR`` so that every process on the host finds the same lock.
LOCK_DIR = Path("/tmp")
#: Seconds between two tries to take a busy lock.
LOCK_POLL_INTERVAL = 0.1
#: Errors that ``stat`` returns on a FUSE mount whose daemon is gone.
STALE_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})


class MountError(ForgeLauncherError):
    """A mount or unmount command failed, timed out, or left no usable mount."""


# -- /proc/self/mountinfo ------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo`` (see proc(5))."""

    mount_id: int
    parent_id: int
    #: Path inside the mounted filesystem that is shown at ``mount_point``.
    root: str
    mount_point: str
    options: str
    #: Filesystem type, such as ``fuse``, ``fuse.sshfs`` or ``ext4``.
    fstype: str
    #: Source as the filesystem reports it: a device, a URL, a directory.
    source: str
    super_options: str

    @property
    def is_fuse(self) -> bool:
        """Whether the filesystem is served by a FUSE daemon."""
        return self.fstype == "fuse" or self.fstype.startswith(("fuse.", "fuseblk"))


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as three octal digits.
    parts = field.split("\\")
    text = parts[0]
    for part in parts[1:]:
        if len(part) >= 3 and all(c in "01234567" for c in part[:3]):
            text += chr(int(part[:3], 8)) + part[3:]
        else:
            text += "\\" + part
    return text


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse the text of a ``mountinfo`` file into entries, in file order."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        # Optional fields (shared:N, master:N, ...) run from the 7th field up
        # to a single "-".
        separator = fields.index("-", 6)
        fstype, source, super_options = (fields[separator + 1 : separator + 4] + ["", "", ""])[:3]
        entries.append(
            MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                options=fields[5],
                fstype=fstype,
                source=_unescape(source),
                super_options=super_options,
            )
        )
    return entries


def read_mountinfo(path: Path = MOUNTINFO) -> list[MountEntry]:
    """Return the mounts visible to this process."""
    return parse_mountinfo(path.read_text())


def normalize_mount_point(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as the kernel lists it: absolute, with the parent's symlinks resolved.

    The last component is not resolved, because ``stat`` on a stale mount
    point fails.
    """
    absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
    parent, name = os.path.split(absolute)
    return os.path.join(os.path.realpath(parent), name) if name else absolute


def read_mount_point(value: object, setting: str, example: str) -> str:
    """Check a mount point setting and return it as an absolute path, with ``~`` expanded and symlinks kept.

    ``example`` is a valid value for messages to suggest. Raises
    :class:`ConfigError` when the value is missing, empty or relative, because
    a relative path resolves against each process's working directory, so
    hosts would disagree on where the storage is.
    """
    if value is None:
        raise ConfigError(f"{setting} is not set. Set it to an absolute path, such as {setting}={example}.")
    text = str(value)
    if not text.strip():
        raise ConfigError(f"{setting} is empty. Set it to an absolute path, such as {setting}={example}.")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        raise ConfigError(
            f"Invalid {setting} {text!r}: it must be an absolute path, the same on every host, such as {setting}={example}."
        )
    return os.path.abspath(expanded)


def find_mount(mount_point: str | os.PathLike[str], entries: list[MountEntry] | None = None) -> MountEntry | None:
    """Return the topmost mount at ``mount_point``, or ``None`` when nothing is mounted there."""
    target = normalize_mount_point(mount_point)
    found = None
    for entry in read_mountinfo() if entries is None else entries:
        # A later line for the same path is mounted over the earlier ones.
        if entry.mount_point == target:
            found = entry
    return found


class MountState(enum.Enum):
    """The result of probing a mount point."""

    NOT_MOUNTED = "not mounted"
    LIVE = "live"
    STALE = "stale"


@dataclass(frozen=True)
class MountProbe:
    """The result of :func:`probe_mount`."""

    mount_point: str
    state: MountState
    entry: MountEntry | None = None
    #: The ``stat`` error of a stale mount.
    error: OSError | None = None


def probe_mount(mount_point: str | os.PathLike[str]) -> MountProbe:
    """Return whether ``mount_point`` is not mounted, mounted and live, or mounted and stale.

    Raises :class:`MountError` when ``stat`` on the mount point fails for
    another reason than a lost FUSE connection, such as permission denied.
    """
    target = normalize_mount_point(mount_point)
    entry = find_mount(target)
    if entry is None:
        return MountProbe(target, MountState.NOT_MOUNTED)

    try:
        os.stat(target)
    except OSError as exc:
        if exc.errno in STALE_ERRNOS:
            return MountProbe(target, MountState.STALE, entry, exc)
        raise MountError(
            f"Cannot stat mount point {target!r} ({entry.fstype} from {entry.source!r}): {exc.strerror}. "
            f"Check its permissions, or unmount it with 'forge umount'."
        ) from exc
    return MountProbe(target, MountState.LIVE, entry)


def describe_entry(entry: MountEntry) -> str:
    """Return ``"<fstype> from '<source>'"`` for messages."""
    return f"{entry.fstype} from {entry.source!r}"


# -- commands ------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """The exit status and decoded output of a finished command, with secret values masked."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class CommandNotFound(MountError):
    """The executable of a command does not exist or cannot be executed."""


class CommandError(MountError):
    """A command failed or timed out.

    ``summary`` is one sentence on what happened, and ``output`` is what the
    command printed on ``stream``. :meth:`describe` puts a caller's hint
    before the output, so the hint never reads as part of the output.
    """

    def __init__(self, summary: str, output: str = "", stream: str = "stderr") -> None:
        self.summary = summary
        self.output = output
        self.stream = stream
        super().__init__(self.describe())

    def describe(self, hint: str = "") -> str:
        """Return the summary, then ``hint``, then the command's output on lines of its own."""
        text = f"{self.summary} {hint}" if hint else self.summary
        if self.output:
            text += f"\nThe command's {self.stream} was:\n{self.output}"
        return text


class CommandTimeout(CommandError):
    """A command ran longer than its timeout and was killed."""


class CommandFailed(CommandError):
    """A command exited with a non-zero status."""

    @classmethod
    def from_result(cls, result: CommandResult) -> CommandFailed:
        summary = f"Command {result.argv} failed with exit status {result.returncode}."
        if result.stderr:
            return cls(summary, result.stderr, "stderr")
        return cls(summary, result.stdout, "stdout")


def environment_without(names: tuple[str, ...], base: dict[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) with ``names`` removed."""
    env = dict(os.environ if base is None else base)
    for name in names:
        env.pop(name, None)
    return env


def mask_secret_values(text: str, env: Mapping[str, str]) -> str:
    """Replace in ``text`` the value of every secret-named variable of ``env`` with ``****``.

    Names are judged by :func:`forge_launcher.secrets.is_secret_name`. Longer
    values are replaced first, so a secret that contains another is masked
    whole.
    NOTE: a very short secret value, such as "1", is masked wherever those
    characters occur, which can garble the rest of the output.
    """
    values = {value for name, value in env.items() if value.strip() and is_secret_name(name)}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def run_command(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> CommandResult:
    """Run ``argv`` and return its result, killing its process group after ``timeout`` seconds.

    ``env`` is the command's environment (default ``os.environ``). The values
    of its secret-named variables are masked in the returned output and in
    the :class:`CommandTimeout` message, because callers show that output in
    errors and store it in the host lock's state file.

    Output goes to temporary files rather than pipes, because a mount command
    may leave a daemon running that keeps inherited pipes open long after the
    command itself has exited.
    """
    log.debug("running %s", argv)
    command_env = os.environ if env is None else env
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
        except FileNotFoundError as exc:
            raise CommandNotFound(f"Command {argv[0]!r} not found.") from exc
        except PermissionError as exc:
            raise CommandNotFound(f"Command {argv[0]!r} is not executable: {exc.strerror}.") from exc
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(process)
            output = mask_secret_values(_read(stderr), command_env)
            raise CommandTimeout(f"Command {argv} timed out after {timeout:g} s.", output) from exc

        return CommandResult(
            list(argv), returncode, mask_secret_values(_read(stdout), command_env), mask_secret_values(_read(stderr), command_env)
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _read(handle: Any) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace").strip()


def format_failure(result: CommandResult) -> str:
    """Return ``"Command [...] failed with exit status N."`` followed by its stderr (or stdout)."""
    return CommandFailed.from_result(result).describe()


def default_unmount_command(lazy: bool) -> list[str]:
    """Return the argv prefix that unmounts a path: ``umount`` as root, ``fusermount`` otherwise."""
    if os.geteuid() == 0:
        return ["umount", "-l"] if lazy else ["umount"]
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"
    return [fusermount, "-u", "-z"] if lazy else [fusermount, "-u"]


def unmount(mount_point: str, command: list[str] | None, lazy: bool, timeout: float) -> None:
    """Unmount ``mount_point`` with ``command`` (default :func:`default_unmount_command`) + the path.

    Raises :class:`CommandNotFound`, :class:`CommandTimeout` or :class:`CommandFailed`.
    """
    argv = [*(command or default_unmount_command(lazy)), mount_point]
    result = run_command(argv, timeout)
    if result.returncode != 0:
        raise CommandFailed.from_result(result)
    log.info("unmounted %s%s", mount_point, " (lazily)" if lazy else "")


# -- one mount per host ----------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """The outcome of the latest mount attempt under a :class:`HostLock`."""

    generation: int
    ok: bool
    pid: int
    message: str = ""


class HostLock:
    """An exclusive ``flock`` shared by every process on this host that mounts ``key``.

    Entering waits up to ``timeout`` seconds for the lock. A waiter then finds
    in :attr:`missed_attempt` the attempt another process recorded while it
    waited, so a failure reaches every waiter without rerunning the command.
    Record each attempt with :meth:`record`.
    """

    def __init__(self, key: str, timeout: float, lock_dir: Path = LOCK_DIR) -> None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.key = key
        self.timeout = timeout
        self.path = lock_dir / f"forge-mount-{digest}.lock"
        self.state_path = lock_dir / f"forge-mount-{digest}.json"
        self.missed_attempt: Attempt | None = None
        self._fd: int | None = None

    def __enter__(self) -> HostLock:
        seen = self._read_attempt()
        self._fd = _open_shared(self.path)
        deadline = time.monotonic() + self.timeout
        waiting = False
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if not waiting:
                waiting = True
                log.info("waiting for another process on this host to mount %s (lock %s)", self.key, self.path)
            if time.monotonic() >= deadline:
                os.close(self._fd)
                self._fd = None
                raise MountError(
                    f"Timed out after {self.timeout:g} s waiting for another process on this host to mount {self.key!r} "
                    f"(lock {str(self.path)!r}). Find the process holding it with 'fuser {self.path}', stop it, and retry."
                )
            time.sleep(LOCK_POLL_INTERVAL)

        latest = self._read_attempt()
        if latest is not None and (seen is None or latest.generation != seen.generation):
            self.missed_attempt = latest
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def record(self, ok: bool, message: str = "") -> None:
        """Store the outcome of an attempt made while holding the lock."""
        previous = self._read_attempt()
        attempt = Attempt(generation=(previous.generation if previous else 0) + 1, ok=ok, pid=os.getpid(), message=message)
        temporary = self.state_path.with_name(f"{self.state_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(attempt.__dict__))
        os.chmod(temporary, 0o666)
        os.replace(temporary, self.state_path)

    def _read_attempt(self) -> Attempt | None:
        try:
            data = json.loads(self.state_path.read_text())
            return Attempt(int(data["generation"]), bool(data["ok"]), int(data["pid"]), str(data.get("message", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable mount state file %s: %s", self.state_path, exc)
            return None


def _open_shared(path: Path) -> int:
    # Open an existing lock file without O_CREAT first: in a sticky /tmp with
    # fs.protected_regular set, O_CREAT on another user's file fails even when
    # its mode allows writing.
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)
    except PermissionError:
        pass
    return fd


# -- storage root ----------------------------------------------------------------


def parse_mode(value: object, setting: str) -> int:
    """Read a permission mode given as octal digits (``"2775"``, ``"0o755"``, ``755``)."""
    text = str(value).strip().lower().removeprefix("0o")
    if isinstance(value, bool) or not text or any(c not in "01234567" for c in text) or int(text, 8) > 0o7777:
        raise ConfigError(f"Invalid {setting} {value!r}: expected a permission mode in octal digits, such as '2775' or '0755'.")
    return int(text, 8)


def prepare_root(root: str, mode: int, setting: str = "storage.root") -> Path:
    """Create the storage root with exactly ``mode`` if it is missing, and check that it is writable.

    An existing directory keeps its mode, because it may belong to someone
    else. Parent directories are created with the default mode.
    """
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise UserError(f"{setting} {str(path)!r} exists but is not a directory. Remove it or choose another path with {setting}=PATH.")

    if not path.exists():
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            # Another process created it first; that one sets the mode.
            pass
        except OSError as exc:
            raise UserError(f"Cannot create {setting} {str(path)!r}: {exc.strerror}. Choose a writable directory with {setting}=PATH.") from exc
        else:
            # chmod after mkdir, because mkdir applies the umask and drops the setgid bit.
            os.chmod(path, mode)
            log.info("created %s with mode %o", path, mode)

    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{setting} {str(path)!r} is not writable by this user. Fix its permissions or choose another directory with {setting}=PATH.")
    return path


def check_marker(marker: str | None, base: Path, consequence: str, fix: str) -> None:
    """Raise a :class:`UserError` when the marker path (relative to ``base``) does not exist.

    ``consequence`` is the effect of a missing marker on the storage, and
    ``fix`` is the message's last sentence.
    """
    if not marker:
        return
    path = base / marker
    if not os.path.lexists(path):
        raise UserError(f"The storage marker {str(path)!r} is missing, so {consequence}. {fix}")
