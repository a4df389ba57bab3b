"""Deploy a built package/ to a PYNQ-Z2 over SSH, optionally run on_target.py there, fetch y_hw.

Nothing on the board is lost: deploy replaces only a folder it made. Before any change the
remote folder must be absent or hold a package of this tool (judged with ``iris_fpga.contract``'s
rules on a listing the board sends); the login's home, ``/`` and top-level folders are refused.
One deploy at a time per folder: a lock beside it (``flock`` on ``.NAME.lock``, released when the
deploy ends or its connection goes). The manifest's files go into a marked temporary sibling,
are checked there against their sha256, and only then take the previous package's place; the
swap renames nothing but that folder and our upload, and removes nothing but the previous package.

Every remote command is built from ``shlex.quote``d parts (``shlex.join``); no user input is
ever pasted into a shell string unquoted. The board-side work is one small Python (``_BOARD``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import posixpath
import secrets
import shlex
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

import paramiko

from iris_fpga import contract, packaging, ssh, testpause
from iris_fpga.board_sftp import BoardSftp
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import (MAX_JSON_BYTES, MAX_NPY_BYTES, atomic_write_bytes, parse_json, parse_npy, printable,
                              sha256_file)

log = logging.getLogger(__name__)

#: Where Jupyter on the PYNQ image serves notebooks from (the image's documented default).
DEFAULT_REMOTE_DIR = "/home/xilinx/jupyter_notebooks/iris_on_fpga"
DEFAULT_USER = "xilinx"  # the PYNQ image's default login
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 86400.0  # a day: beyond any board run, and within what sockets and select accept
TAIL_LINES = 20
#: Kept free on the board's disk beyond the package itself.
DISK_MARGIN_BYTES = 1 << 20
NOT_OURS = ExitCode.REMOTE_NOT_WRITABLE  # exit 8: "a remote folder this tool did not make"

# Runs on the board with the remote Python: which of the modules named in argv are missing.
_ENV_CHECK = (
    "import importlib.util, sys\n"
    "print('python', sys.version.split()[0], sys.executable)\n"
    "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
    "if missing:\n"
    "    sys.exit('missing: ' + ' '.join(missing))\n"
)

# What deploy does on the board, as the login user: a standalone script sent as ``python -c``.
_BOARD = (Path(__file__).parent / "deploy_board.py").read_text(encoding="utf-8")


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the SSH target options (README, "Deploy over SSH") to ``parser``."""
    group = parser.add_argument_group(
        "deploy to a board over SSH",
        f"Authentication: --key, the usual ~/.ssh keys or ssh-agent; a password only from "
        f"${ssh.PASSWORD_ENV} or a terminal prompt (also given to sudo on the board).")
    group.add_argument("--host", help="board host name or address (deploy runs only when given)")
    group.add_argument("--user", default=DEFAULT_USER, help="login user (default: %(default)s)")
    group.add_argument("--port", type=int, default=22, help="SSH port (default: %(default)s)")
    group.add_argument("--key", type=Path, help="private key file")
    group.add_argument("--known-hosts", type=Path, default=Path("~/.ssh/known_hosts"),
                       help="known_hosts file used to verify the board's host key (default: %(default)s)")
    group.add_argument("--trust-new-host", action="store_true",
                       help="accept an unknown host key once and record it in --known-hosts "
                            "(a changed key is always refused)")
    group.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR,
                       help="package folder on the board: absent, or a package this tool put there; "
                            "relative paths and ~/ are under the login's home (default: %(default)s)")
    group.add_argument("--remote-python", default="python3",
                       help="Python on the board, for deploy's checks and on_target.py (default: %(default)s)")
    group.add_argument("--run", action="store_true",
                       help="run on_target.py on the board (as root) and fetch y_hw.npy and y_hw.json")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds allowed for connecting, for each remote command including "
                            f"on_target.py, and for another deploy to the folder to finish; at most "
                            f"{MAX_TIMEOUT:.0f} (default: %(default)s)")
    group.add_argument("--emulate", action="store_true",
                       help="run on_target.py with --emulate (no FPGA: the package's stand-in runs the "
                            "C-simulation, or the IP's Verilog for an rtl package)")


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


@dataclass(frozen=True)
class DeployTarget:
    """Where and how to deploy: the SSH target and what to do there, checked once when made."""

    host: str
    user: str = DEFAULT_USER
    port: int = 22
    key: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    trust_new_host: bool = False
    remote_dir: str = DEFAULT_REMOTE_DIR
    remote_python: str = "python3"
    run: bool = False
    emulate: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> "DeployTarget":
        """The target from ``add_deploy_arguments``' options (ToolError, exit 2, when they are wrong)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    def __post_init__(self) -> None:
        if not self.host or _control(self.host) or self.host.startswith("-"):
            raise ToolError(f"deploy needs --host, a host name or address (not {self.host!r})", ExitCode.USAGE)
        if not 0 < self.port < 65536:
            raise ToolError(f"--port {self.port} is not a TCP port", ExitCode.USAGE)
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ToolError(f"--timeout {self.timeout!r}: give seconds, more than 0 and at most {MAX_TIMEOUT:.0f}",
                            ExitCode.USAGE)
        for option, value in (("--user", self.user), ("--remote-dir", self.remote_dir),
                              ("--remote-python", self.remote_python)):
            if not value or _control(value):
                raise ToolError(f"{option} {value!r} is empty or holds a control character or newline: "
                                f"refused", ExitCode.USAGE)
        if self.remote_dir.startswith("~") and self.remote_dir != "~" and not self.remote_dir.startswith("~/"):
            raise ToolError(f"--remote-dir {self.remote_dir!r}: only ~ (the login's home) is understood, "
                            f"not ~name; give the full path", ExitCode.USAGE)

    @property
    def modules(self) -> list[str]:
        """What on_target.py needs of the board's Python."""
        return ["numpy"] if self.emulate else ["numpy", "pynq"]


@dataclass(frozen=True)
class _Package:
    directory: Path
    build_id: str
    files: dict[str, str]  # relative posix path -> sha256, manifest.json included
    size: int


@dataclass(frozen=True)
class _Remote:
    """The board's package folder and the names beside it that only this tool uses."""

    directory: str
    token: str

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.directory)

    @property
    def name(self) -> str:
        return posixpath.basename(self.directory)

    @property
    def upload(self) -> str:
        return posixpath.join(self.parent, f".{self.name}.upload-{self.token}")

    @property
    def old(self) -> str:
        return posixpath.join(self.parent, f".{self.name}.old-{self.token}")


@dataclass(frozen=True)
class _Root:
    """How a command becomes root on the board: the sudo prefix and what sudo reads on stdin."""

    prefix: tuple[str, ...] = ()
    stdin: bytes | None = None

    def wrap(self, command: str) -> str:
        """``command`` in a login shell (where PYNQ images set up their venv and XRT), via sudo."""
        return _sh(*self.prefix, "bash", "-lc", command)


def deploy(package_dir: Path, target: DeployTarget) -> None:
    """Copy ``package_dir`` to ``target``'s board; with ``target.run`` run it there.

    Raises ``ToolError`` with the exit code of the shared table (2, 5-9, or on_target.py's 1-4).
    """
    started = time.monotonic()
    package = _load_package(Path(package_dir), target)
    timings: dict[str, float] = {}
    t = time.monotonic()
    conn = ssh.connect(target.host, user=target.user, port=target.port, key=target.key,
                       known_hosts=target.known_hosts, trust_new_host=target.trust_new_host,
                       timeout=target.timeout)
    timings["connect"] = time.monotonic() - t
    with conn:
        uid, gid, home = _whoami(conn)
        remote = _Remote(_resolve(target.remote_dir, home, conn), secrets.token_hex(4))
        root = None
        if target.run:
            root = _privilege(conn, uid)
            _check_remote_python(conn, target, root)
        with _Lock(conn, target, remote):  # the lock file goes with the lock, so a refusal leaves nothing
            judged = _judge(conn, target, remote, _board(conn, target, "inspect", *_inspect_args(remote)))
            t = time.monotonic()
            _begin(conn, target, remote, package)
            try:
                _upload(conn, package, remote)
                _verify_and_swap(conn, target, package, remote, judged)
            except BaseException:
                _discard(conn, target, remote)
                raise
            timings["copy"] = time.monotonic() - t
            log.info("board package %s:%s is build %s (%d files, %s)", conn.target, remote.directory,
                     package.build_id, len(package.files), _human(package.size))
            if root is not None:
                t = time.monotonic()
                _run_on_target(conn, target, remote, root, owner=(uid, gid))
                timings["run"] = time.monotonic() - t
                t = time.monotonic()
                _fetch_results(conn, remote, package)
                timings["fetch"] = time.monotonic() - t
    log.info("deploy done in %.2f s (%s)", time.monotonic() - started,
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))


# --- local side -------------------------------------------------------------------------------

def _load_package(package_dir: Path, target: DeployTarget) -> _Package:
    """Read manifest.json and check every listed file (a regular file, not a link, with its sha256)."""
    manifest = contract.read_manifest(package_dir)
    if manifest is None:
        raise ToolError(f"{package_dir / contract.MANIFEST} not found: build the package first", ExitCode.USAGE)
    if not manifest["files"]:
        raise ToolError(f"{package_dir / contract.MANIFEST} lists no files: rebuild the package", ExitCode.USAGE)
    problems = contract.verify(package_dir, manifest)
    if problems:
        shown = ", ".join(map(str, problems[:5])) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ToolError(f"{package_dir} does not match its manifest.json ({shown}): rebuild the package; "
                        "nothing was sent", ExitCode.USAGE)
    files = dict(manifest["files"])
    if target.run and contract.BOARD_SCRIPT not in files:
        raise ToolError(f"{package_dir} has no on_target.py in its manifest: cannot --run", ExitCode.USAGE)
    if target.run and not target.emulate and contract.BITSTREAM_FILES[0] not in files:
        raise ToolError(f"{package_dir} has no bitstream ({contract.BITSTREAM_FILES[0]}): use --emulate, "
                        "or build it with Vivado", ExitCode.USAGE)
    if target.run:
        _check_results_writable(package_dir)
    files[contract.MANIFEST] = sha256_file(package_dir / contract.MANIFEST)
    if contract.NOTEBOOK in files:  # sent as Jupyter last saved it; the board checks that copy
        files[contract.NOTEBOOK] = sha256_file(package_dir / contract.NOTEBOOK)
    size = sum((package_dir / rel).lstat().st_size for rel in files)
    return _Package(package_dir, manifest["build_id"], files, size)


def _check_results_writable(package_dir: Path) -> None:
    """--run fetches y_hw.* into the package: refuse, before the board runs, what would stop that."""
    try:
        with tempfile.TemporaryFile(dir=package_dir):
            pass
    except OSError as exc:
        raise ToolError(f"cannot write to {package_dir} ({exc.strerror}): --run fetches y_hw.npy and y_hw.json "
                        f"into it; make it writable or deploy without --run", ExitCode.USAGE) from None
    for name in contract.RESULT_FILES:
        path = package_dir / name
        if os.path.lexists(path) and not stat.S_ISREG(path.lstat().st_mode):
            raise ToolError(f"{path} is not a regular file: --run would replace it with the board's; "
                            f"move it away first", ExitCode.USAGE)


def _resolve(remote_dir: str, home: str, conn: ssh.Connection) -> str:
    """The absolute remote folder: ``~``, ``~/x`` and relative paths are under the login's home."""
    path = home + remote_dir[1:] if remote_dir == "~" or remote_dir.startswith("~/") else remote_dir
    if not path.startswith("/"):
        if not home.startswith("/"):
            raise ToolError(f"{conn.target} gives no home folder for {conn.user}: give --remote-dir as a full path",
                            ExitCode.USAGE)
        path = posixpath.join(home, path)
    path = "/" + posixpath.normpath(path).lstrip("/")
    _refuse_protected(path, home, conn, remote_dir)
    return path


def _refuse_protected(path: str, home: str, conn: ssh.Connection, given: str) -> None:
    """Deploy never replaces ``/``, a top-level folder, the login's home or a folder holding it."""
    home = posixpath.normpath(home) if home.startswith("/") else ""
    if path.count("/") < 2:
        why = "is / or a top-level system folder"
    elif home and (path == home or home.startswith(path + "/")):
        why = "is the login's home folder" if path == home else "holds the login's home folder"
    else:
        return
    raise ToolError(f"--remote-dir {given!r} on {conn.target} resolves to {printable(path)}, which {why}: deploy "
                    f"never replaces it; give a folder of its own, e.g. ~/jupyter_notebooks/iris_on_fpga", NOT_OURS)


def _inspect_args(remote: _Remote) -> list[str]:
    return [remote.directory, str(contract.MAX_ENTRIES), json.dumps(contract.EXTRA_DIRS), contract.MANIFEST,
            str(contract.MAX_MANIFEST_BYTES)]


@dataclass(frozen=True)
class _Judged:
    """The remote folder as judged ours: its identity ("absent" or dev:ino, so that the swap
    replaces exactly this folder), its entries and its manifest (None when empty or absent)."""

    identity: str
    entries: list = field(default_factory=list)
    manifest: dict | None = None


def _judge(conn: ssh.Connection, target: DeployTarget, remote: _Remote, found: dict) -> _Judged:
    """Refuse (exit 8) unless the remote folder is absent or only a package of this tool."""
    where = f"{conn.target}:{remote.directory}"
    _refuse_protected(found["real"], found["home"], conn, target.remote_dir)
    if found["kind"] == "absent":
        return _Judged("absent")
    advice = "deploy replaces only a package folder it made; choose another --remote-dir or move it away"
    if found["kind"] != "dir":
        raise ToolError(f"{where} exists and is a {printable(found['kind'])}, not a folder: {advice}", NOT_OURS)
    entries, manifest = [tuple(e) for e in found["entries"]], None
    if entries:
        if "manifest" not in found:
            raise ToolError(f"{where} holds files but no {contract.MANIFEST} of a package: {advice}", NOT_OURS)
        manifest = contract.parse_manifest(found["manifest"].encode("latin-1"), f"{where}/{contract.MANIFEST}",
                                           NOT_OURS)
        extra = contract.unlisted(entries, manifest)
        if extra:
            shown = printable(", ".join(extra[:5])) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise ToolError(f"{where} holds what is not part of a package of this tool ({shown}): {advice}",
                            NOT_OURS)
    return _Judged(found["id"], entries, manifest)


# --- remote side ------------------------------------------------------------------------------

def _sh(*parts: str) -> str:
    return shlex.join(parts)


def _board(conn: ssh.Connection, target: DeployTarget, op: str, *args: str, stdin: bytes | None = None) -> dict:
    """Run one operation of ``_BOARD`` with the remote Python as the login user; its JSON answer."""
    result = conn.run(_sh(target.remote_python, "-c", _BOARD, op, *args), stdin=stdin)
    if result.status in (126, 127):
        raise ToolError(f"{target.remote_python} not found on {conn.target} ({_last_line(result.stderr)}); "
                        f"install it or give --remote-python", ExitCode.REMOTE_ENVIRONMENT)
    lines = result.stdout.strip().splitlines()
    try:  # the board's answer is untrusted: bounded like any file read back from it
        answer = parse_json(lines[-1].encode(), "the board's answer") if lines else None
    except ToolError:
        answer = None
    if not isinstance(answer, dict):
        raise ToolError(f"{target.remote_python} on {conn.target} could not {op} (exit {result.status}): "
                        f"{_last_line(result.output)[:300]}", ExitCode.REMOTE_ENVIRONMENT)
    if "error" in answer:
        raise ToolError(f"cannot write to {conn.target}: {printable(str(answer['error']))} (choose another "
                        "--remote-dir)", ExitCode.REMOTE_NOT_WRITABLE)
    for key, (kind, required) in _ANSWERS.get(op, {}).items():
        if (key in answer and not _typed(answer[key], kind)) or (required and key not in answer):
            raise ToolError(f"{target.remote_python} on {conn.target} gave a malformed answer to {op} ({key}): "
                            f"refused", ExitCode.REMOTE_ENVIRONMENT)
    return answer


# What each board operation answers (deploy_board.py): key -> (type, required). Lists hold text, or
# lists of text (inspect's entries).
_ANSWERS = {
    "inspect": {"home": (str, True), "real": (str, True), "kind": (str, True), "id": (str, False),
                "entries": (list, False), "manifest": (str, False)},
    "begin": {"free": (int, True), "removed": (list, True)},
    "swap": {"bad": (list, False), "changed": (str, False), "carried": (list, False), "left": (str, False)},
}


def _typed(value, kind: type) -> bool:
    if not isinstance(value, kind):
        return False
    text = lambda x: isinstance(x, str)  # noqa: E731
    return kind is not list or all(text(x) or (isinstance(x, list) and all(map(text, x))) for x in value)


class _Lock:
    """One deploy at a time per remote folder: ``_BOARD hold`` keeps an flock while this is open.

    The lock ends with the holding process, which ends when its stdin closes: when this context
    exits, or when the SSH connection goes, so a deploy that died leaves no lock behind.
    """

    def __init__(self, conn: ssh.Connection, target: DeployTarget, remote: _Remote):
        self.conn, self.target, self.remote = conn, target, remote
        self.channel: paramiko.Channel | None = None

    def __enter__(self) -> "_Lock":
        command = _sh(self.target.remote_python, "-c", _BOARD, "hold", self.remote.directory,
                      str(self.target.timeout))
        self.channel = self.conn.start(command)
        answer = self._answer(self.target.timeout + self.conn.timeout)
        where = f"{self.conn.target}:{self.remote.directory}"
        if "locked" in answer:
            return self
        self.close()
        if "busy" in answer:
            raise ToolError(f"another deploy to {where} is running (lock {printable(answer['busy'])}) and did not "
                            f"finish within {self.target.timeout:g} s (--timeout): retry when it is done", NOT_OURS)
        if "in_the_way" in answer:
            raise ToolError(f"{printable(answer['in_the_way'])} on {self.conn.target} is not a lock of this tool: "
                            f"deploy never removes it; move it away or choose another --remote-dir", NOT_OURS)
        if "error" in answer:
            raise ToolError(f"cannot write to {self.conn.target}:{self.remote.parent}: {printable(answer['error'])} "
                            f"(choose another --remote-dir)", ExitCode.REMOTE_NOT_WRITABLE)
        raise ToolError(f"locking {where} failed: {printable(answer.get('output', ''))[:300]}",
                        ExitCode.REMOTE_ENVIRONMENT)

    def _answer(self, seconds: float) -> dict:
        """The holder's first line (JSON), waiting at most ``seconds``."""
        data, deadline = b"", time.monotonic() + seconds
        try:
            while b"\n" not in data and time.monotonic() < deadline:
                if self.channel.recv_ready():
                    data += self.channel.recv(4096)
                elif self.channel.exit_status_ready():
                    data += self.channel.recv(4096) if self.channel.recv_ready() else b""
                    break
                else:
                    time.sleep(0.05)
            if self.channel.exit_status_ready() and self.channel.recv_exit_status() in (126, 127):
                raise ToolError(f"{self.target.remote_python} not found on {self.conn.target}; install it or "
                                f"give --remote-python", ExitCode.REMOTE_ENVIRONMENT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ToolError(f"the SSH connection to {self.conn.target} failed: {exc}", ExitCode.SSH_UNREACHABLE) from exc
        try:
            return json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            stderr = self.channel.recv_stderr(4096) if self.channel.recv_stderr_ready() else b""
            return {"output": (data + stderr).decode(errors="replace").strip() or "no answer"}

    def close(self) -> None:
        """Let the holder go (end of its stdin) and wait briefly for it to remove the lock."""
        channel, self.channel = self.channel, None
        if channel is None:
            return
        try:
            channel.shutdown_write()
            deadline = time.monotonic() + min(self.conn.timeout, 10)
            while not channel.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
        except (paramiko.SSHException, OSError, EOFError):
            pass  # the connection is gone, and with it the lock
        finally:
            channel.close()

    def __exit__(self, *exc) -> None:
        self.close()


def _whoami(conn: ssh.Connection) -> tuple[int, int, str]:
    """The login's uid, gid and home folder on the board."""
    result = conn.run("id -u && id -g && printf '%s\\n' \"$HOME\"")
    lines = result.stdout.splitlines()
    try:
        return int(lines[0]), int(lines[1]), lines[2] if len(lines) > 2 else ""
    except (IndexError, ValueError):
        raise ToolError(f"unexpected answer from {conn.target} to 'id -u': {result.output.strip()[:200]!r}",
                        ExitCode.REMOTE_ENVIRONMENT) from None


def _privilege(conn: ssh.Connection, uid: int) -> _Root:
    """How to become root on the board."""
    if uid == 0:
        return _Root()
    probe = conn.run(_sh("sudo", "-n", "true"))
    if probe.status == 0:
        return _Root(("sudo", "-n", "--"))
    if probe.status == 127:
        raise ToolError(f"on_target.py needs root, {conn.user} is not root and the board has no sudo",
                        ExitCode.BOARD)
    password = conn.sudo_password()
    if password is None:
        raise ToolError(f"on_target.py needs root: sudo on the board wants {conn.user}'s password; set "
                        f"${ssh.PASSWORD_ENV} or run from a terminal", ExitCode.SSH_AUTH)
    secret = password.encode() + b"\n"
    check = conn.run(_sh("sudo", "-S", "-k", "-p", "", "-v"), stdin=secret)
    if check.status != 0:
        raise ToolError(f"sudo on the board refused {conn.user}'s password: {_last_line(check.stderr)}",
                        ExitCode.SSH_AUTH)
    # -k: always ask, so the password line is consumed by sudo and never reaches on_target.py.
    return _Root(("sudo", "-S", "-k", "-p", "", "--"), secret)


def _check_remote_python(conn: ssh.Connection, target: DeployTarget, root: _Root) -> None:
    python = target.remote_python
    result = conn.run(root.wrap(_sh(python, "-c", _ENV_CHECK, *target.modules)), stdin=root.stdin)
    if result.status == 0:
        log.info("board: %s", _last_line(result.stdout) or "python ok")
        return
    if result.status in (126, 127):
        raise ToolError(f"{python} not found on the board ({_last_line(result.stderr)}); "
                        f"install it or give --remote-python", ExitCode.REMOTE_ENVIRONMENT)
    if result.status == 1 and "missing:" in result.stderr:
        missing = printable(result.stderr.split("missing:", 1)[1].strip())
        hint = "" if target.emulate else " (with --emulate pynq is not needed)"
        raise ToolError(f"{python} on the board lacks {missing}{hint}", ExitCode.REMOTE_ENVIRONMENT)
    raise ToolError(f"checking {python} on the board failed (exit {result.status}): "
                    f"{_last_line(result.output)}", ExitCode.REMOTE_ENVIRONMENT)


def _begin(conn: ssh.Connection, target: DeployTarget, remote: _Remote, package: _Package) -> None:
    """Make the marked upload folder (removing our own leftovers) and check the free space."""
    answer = _board(conn, target, "begin", remote.parent, remote.name, remote.token)
    for name in answer["removed"]:
        log.info("removed %s, left by a deploy that broke off", printable(posixpath.join(remote.parent, name)))
    if answer["free"] < package.size + DISK_MARGIN_BYTES:
        _discard(conn, target, remote)
        raise ToolError(f"remote disk full: {_human(answer['free'])} free at {conn.target}:{remote.parent}, "
                        f"the package needs {_human(package.size)}", ExitCode.REMOTE_NOT_WRITABLE)


class _Progress:
    """Upload progress: a live line on a terminal, one log line per file otherwise."""

    def __init__(self, total: int, count: int, stream=None):
        self.total, self.count = max(total, 1), count
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.done_bytes = self.done_files = 0
        self._current = 0
        self._last_draw = 0.0

    def __call__(self, filename: str, size: int, sent: int) -> None:
        self.done_bytes += sent - self._current
        self._current = sent
        if sent >= size:
            self.done_files += 1
            self._current = 0
            if not self.live:
                log.info("  uploaded %s (%s) [%d/%d]", filename, _human(size),
                         self.done_files, self.count)
        if self.live and (time.monotonic() - self._last_draw > 0.1 or self.done_files == self.count):
            self._last_draw = time.monotonic()
            pct = min(100, 100 * self.done_bytes // self.total)
            self.stream.write(f"\rupload {pct:3d}%  {_human(self.done_bytes)} / {_human(self.total)}  "
                              f"file {self.done_files}/{self.count}\033[K")
            self.stream.flush()

    def finish(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def _upload(conn: ssh.Connection, package: _Package, remote: _Remote) -> None:
    """Send exactly the manifest's files over SFTP into the marked upload folder.

    Each file is opened without following a link (the manifest check refused links already) and
    written under the name the manifest gives it; the board answers with status codes only.
    """
    log.info("uploading %d files (%s) to %s:%s", len(package.files), _human(package.size), conn.target,
             remote.upload)
    progress = _Progress(package.size, len(package.files))
    rel = ""
    try:
        with BoardSftp(conn) as sftp:
            made = {remote.upload}
            for rel in sorted(package.files):
                for parent in reversed(PurePosixPath(rel).parents[:-1]):
                    folder = posixpath.join(remote.upload, parent.as_posix())
                    if folder not in made:
                        sftp.client.mkdir(folder, 0o755)
                        made.add(folder)
                sftp.send(package.directory / rel, posixpath.join(remote.upload, rel), rel, progress)
    except PermissionError as exc:
        raise ToolError(f"cannot write {rel} to {conn.target}:{remote.upload}: {printable(exc.strerror or exc)}",
                        ExitCode.REMOTE_NOT_WRITABLE) from None
    except (paramiko.SSHException, paramiko.SFTPError, OSError, EOFError) as exc:
        transport = conn.transport
        if type(exc) is OSError and exc.errno is None and transport and transport.is_active():
            # an SFTP failure status (paramiko gives it no errno): OpenSSH answers a full disk so
            raise ToolError(f"the board refused {rel} ({printable(exc)}): remote disk full? The board's "
                            f"previous package is untouched", ExitCode.REMOTE_NOT_WRITABLE) from None
        raise ToolError(f"upload to {conn.target} broke off at {rel}: {printable(exc) or type(exc).__name__}; "
                        f"the board's previous package is untouched", ExitCode.SSH_UNREACHABLE) from None
    finally:
        progress.finish()


def _verify_and_swap(conn: ssh.Connection, target: DeployTarget, package: _Package, remote: _Remote,
                     judged: _Judged) -> None:
    """On the board: check the upload against the manifest's sha256 sums, then swap it in.

    Only the folder judged ours (same identity) is replaced. What a run or a user left in it is
    carried into the new package (``_swap_plan``); if anything else appears in it meanwhile, it
    goes back untouched (exit 8), and it is never removed recursively.
    """
    plan = _swap_plan(package, judged)
    answer = _board(conn, target, "swap", remote.directory, remote.upload, remote.old, judged.identity,
                    stdin=json.dumps(plan).encode())
    where = f"{conn.target}:{remote.directory}"
    if "bad" in answer:
        shown = printable(", ".join(map(str, answer["bad"][:5])))
        raise ToolError(f"the copy on {conn.target} does not match manifest.json ({shown}): remote disk full or "
                        f"failing? The board's previous package is untouched", ExitCode.REMOTE_NOT_WRITABLE)
    if "changed" in answer:
        raise ToolError(f"{where} changed while deploying ({printable(answer['changed'])}): left as it was; "
                        f"retry when nothing writes into it", NOT_OURS)
    log.info("checked %d sha256 sums on the board and moved the upload into place", len(package.files))
    carried = [printable(name) for name in answer.get("carried", [])]
    if carried:
        log.info("kept from the board's previous package (build %s): %s",
                 printable(plan["old_id"]), ", ".join(carried))
    if "left" in answer:
        log.warning("something appeared in the replaced package while it was removed (%s): kept as %s:%s; "
                    "look inside, then remove it", printable(answer["left"]), conn.target, remote.old)


def _swap_plan(package: _Package, judged: _Judged) -> dict:
    """What the board's swap needs: the sums to check, the entries judged ours, and what to carry
    over as the local package step does (``packaging``): previous/ and .ipynb_checkpoints/, results
    of the same build in place, of another build and an edited notebook into previous/<its id>/."""
    manifest = judged.manifest or {}
    plan = {"sums": package.files, "judged": judged.entries, "extra_dirs": list(contract.EXTRA_DIRS),
            "keep_dirs": list(packaging.KEPT_DIRS), "results": list(contract.RESULT_FILES),
            "notebook": contract.NOTEBOOK, "notebook_sha": manifest.get("files", {}).get(contract.NOTEBOOK),
            "previous": contract.PREVIOUS, "old_id": packaging.aside_name(manifest.get("build_id")),
            "new_id": package.build_id}
    for point in ("board-copied", "board-removing"):
        if testpause.requested(point):
            plan["pause"] = {"point": point, "file": testpause.requested(point)}
    return plan


def _discard(conn: ssh.Connection, target: DeployTarget, remote: _Remote) -> None:
    """Best effort: remove our marked upload folder (a later deploy removes it otherwise)."""
    transport = conn.transport
    if transport is None or not transport.is_active():
        return
    try:
        _board(conn, target, "discard", remote.upload)
    except ToolError as exc:
        log.debug("could not remove %s: %s", remote.upload, exc)


def _run_on_target(conn: ssh.Connection, target: DeployTarget, remote: _Remote, root: _Root,
                   owner: tuple[int, int]) -> None:
    limit = max(1, int(round(target.timeout)))
    args = ["--emulate"] if target.emulate else []
    # -u: stream output as it comes; -B: no root-owned __pycache__ in the user's folder.
    # coreutils timeout stops on_target.py on the board too, not just our wait for it.
    command = _sh("timeout", "-k", "5", str(limit), target.remote_python, "-u", "-B", contract.BOARD_SCRIPT, *args)
    inner = f"cd {shlex.quote(remote.directory)} && exec {command}"
    if root.prefix:
        # Run through sudo, on_target.py writes y_hw.* as root (mode 0600): give them back to the
        # login user, or they could not be fetched nor removed by the next deploy.
        inner = (f"cd {shlex.quote(remote.directory)} || exit 1\n{command}\nstatus=$?\n"
                 f"chown -- {owner[0]}:{owner[1]} {' '.join(map(shlex.quote, contract.RESULT_FILES))} 2>/dev/null\n"
                 f"exit $status")
    log.info("running on_target.py%s on %s (output follows)", " --emulate" if args else "", conn.target)
    started = time.monotonic()
    result = conn.run(root.wrap(inner), stdin=root.stdin, timeout=limit + 15, stream_to=(sys.stdout, sys.stderr))
    elapsed = time.monotonic() - started
    status = result.status
    if status == 0 and not result.timed_out:
        log.info("on_target.py finished in %.2f s", elapsed)
        return
    _log_tail(result.output)
    if result.timed_out or status == 124 or (status in (137, -1) and elapsed >= limit):
        raise ToolError(f"on_target.py did not finish within {limit} s on {conn.target} (--timeout); "
                        f"a hung DMA transfer or a stuck board?", ExitCode.SSH_UNREACHABLE)
    if 1 <= status <= 4:
        raise ToolError(f"on_target.py failed on {conn.target} with exit code {status} "
                        f"({ExitCode(status).name}); its last output is above", ExitCode(status))
    if status in (126, 127):
        raise ToolError(f"on_target.py could not be started on {conn.target}: {_last_line(result.stderr)}",
                        ExitCode.REMOTE_ENVIRONMENT)
    raise ToolError(f"on_target.py ended on {conn.target} with exit status {status}", ExitCode.BOARD)


def _fetch_results(conn: ssh.Connection, remote: _Remote, package: _Package) -> None:
    """Bring y_hw.npy and y_hw.json back; install them only if they belong to this build.

    The board names no local path: each file is read over SFTP into memory (a regular file, not a
    link, at most the bounded readers' cap, however much the board sends), parsed with those
    readers, and only then written under its fixed name into the package, atomically.
    """
    with BoardSftp(conn) as sftp:
        fetched = {name: sftp.read(posixpath.join(remote.directory, name), cap)
                   for name, cap in zip(contract.RESULT_FILES, (MAX_NPY_BYTES, MAX_JSON_BYTES))}
    array, record_name = contract.RESULT_FILES
    record = parse_json(fetched[record_name], record_name)
    remote_build = record.get("build_id") if isinstance(record, dict) else None
    if not isinstance(remote_build, str):
        raise ToolError(f"y_hw.json from {conn.target} is not a record of on_target.py (no build_id text)",
                        ExitCode.USAGE)
    parse_npy(fetched[array], array)
    if remote_build != package.build_id:
        raise ToolError(f"y_hw.json on {conn.target} is from build {printable(remote_build)}, the package is "
                        f"build {package.build_id}: not fetched", ExitCode.CHECK_FAILED)
    for name in contract.RESULT_FILES:  # the array first, its record last: a record always has its data
        atomic_write_bytes(package.directory / name, fetched[name])
    log.info("fetched y_hw.npy and y_hw.json (build %s, mode %s) into %s", remote_build,
             printable(str(record.get("mode", "?"))), package.directory)


# --- helpers ----------------------------------------------------------------------------------

def _last_line(text: str) -> str:
    """The board's last non-empty line, escaped (``printable``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return printable(lines[-1]) if lines else ""


def _log_tail(output: str) -> None:
    lines = [printable(line) for line in output.rstrip().split("\n")[-TAIL_LINES:]]
    if lines:
        log.error("last %d lines of on_target.py output:\n%s", len(lines), "\n".join(f"  | {l}" for l in lines))


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


