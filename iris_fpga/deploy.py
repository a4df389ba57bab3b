"""Deploy a built package/ to a PYNQ-Z2 over SSH, optionally run on_target.py there, fetch y_hw.

The board's copy is replaced atomically: the files named in manifest.json go into a hidden
temporary sibling folder, are checked there against the manifest's sha256 sums, and only then
take the place of the previous folder (two renames in one remote command). A copy that breaks
off leaves the previous package untouched; the next deploy removes the leftover.

Every remote command is built from ``shlex.quote``d parts (``shlex.join``); no user input is
ever pasted into a shell string unquoted.
"""
from __future__ import annotations

import argparse
import json
import logging
import posixpath
import secrets
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import paramiko
from scp import SCPClient, SCPException

from iris_fpga import ssh
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Where Jupyter on the PYNQ image serves notebooks from (the image's documented default).
DEFAULT_REMOTE_DIR = "/home/xilinx/jupyter_notebooks/iris_on_fpga"
DEFAULT_USER = "xilinx"  # the PYNQ image's default login
DEFAULT_TIMEOUT = 120.0
RESULT_FILES = ("y_hw.npy", "y_hw.json")
TAIL_LINES = 20
#: Kept free on the board's disk beyond the package itself.
DISK_MARGIN_BYTES = 1 << 20

# Exit statuses of the remote helper scripts below (none collides with a shell's 126/127).
_RC_MKDIR, _RC_NOT_WRITABLE, _RC_NOT_A_DIR = 10, 11, 12
_RC_VERIFY = 30
_RC_MOVE_OLD, _RC_MOVE_NEW, _RC_RM_OLD = 20, 21, 22

# Runs on the board with the remote Python: which of the modules named in argv are missing.
_ENV_CHECK = (
    "import importlib.util, sys\n"
    "print('python', sys.version.split()[0], sys.executable)\n"
    "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
    "if missing:\n"
    "    sys.exit('missing: ' + ' '.join(missing))\n"
)
# ``sha256sum -c --quiet`` for boards without coreutils' sha256sum: "<sha256>  <name>" lines on stdin.
_CHECK_SUMS = (
    "import hashlib, sys\n"
    "bad = 0\n"
    "for line in sys.stdin:\n"
    "    digest, name = line.rstrip('\\n').split('  ', 1)\n"
    "    h = hashlib.sha256()\n"
    "    try:\n"
    "        with open(name, 'rb') as f:\n"
    "            for b in iter(lambda: f.read(1 << 20), b''):\n"
    "                h.update(b)\n"
    "    except OSError:\n"
    "        print(name + ': FAILED open or read'); bad = 1; continue\n"
    "    if h.hexdigest() != digest:\n"
    "        print(name + ': FAILED'); bad = 1\n"
    "sys.exit(bad)\n"
)


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the SSH target options (interfaces.md, "SSH target") to ``parser``."""
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
                       help="package folder on the board; relative paths are under the login's home "
                            "(default: %(default)s)")
    group.add_argument("--remote-python", default="python3",
                       help="Python on the board that runs on_target.py (default: %(default)s)")
    group.add_argument("--run", action="store_true",
                       help="run on_target.py on the board (as root) and fetch y_hw.npy and y_hw.json")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds allowed for connecting and for each remote command, "
                            "including on_target.py (default: %(default)s)")
    try:
        group.add_argument("--emulate", action="store_true",
                           help="run on_target.py with --emulate (C-simulation stand-in, no FPGA)")
    except argparse.ArgumentError:
        pass  # the caller's parser already has --emulate; share it


@dataclass
class _Package:
    directory: Path
    build_id: str
    files: dict[str, str]  # relative posix path -> sha256, manifest.json included
    size: int = 0


@dataclass
class _RemotePaths:
    directory: str
    parent: str
    name: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def upload_prefix(self) -> str:
        return posixpath.join(self.parent, f".{self.name}.upload-")

    @property
    def old_prefix(self) -> str:
        return posixpath.join(self.parent, f".{self.name}.old-")

    @property
    def tmp(self) -> str:
        return self.upload_prefix + self.token

    @property
    def old(self) -> str:
        return self.old_prefix + self.token


def deploy(package_dir: Path, options: argparse.Namespace) -> None:
    """Copy ``package_dir`` to the board named in ``options``; with ``options.run`` run it there.

    Raises ``ToolError`` with the exit code of the shared table (2, 5-9, or on_target.py's 1-4).
    """
    started = time.monotonic()
    _check_options(options)
    package = _load_package(Path(package_dir), run=options.run, emulate=options.emulate)
    timings: dict[str, float] = {}

    t = time.monotonic()
    conn = ssh.connect(options.host, user=options.user, port=options.port, key=options.key,
                       known_hosts=options.known_hosts, trust_new_host=options.trust_new_host,
                       timeout=options.timeout)
    timings["connect"] = time.monotonic() - t
    with conn:
        uid, gid, home = _whoami(conn)
        remote = _remote_paths(options.remote_dir, home)
        sudo: tuple[list[str], bytes | None] | None = None
        if options.run:
            sudo = _privilege(conn, uid)
            _check_remote_python(conn, options, sudo)

        t = time.monotonic()
        _prepare(conn, remote, package)
        try:
            _upload(conn, package, remote)
            _verify_and_swap(conn, package, remote, options.remote_python)
        except BaseException:
            _discard(conn, remote.tmp)
            raise
        timings["copy"] = time.monotonic() - t
        log.info("board package %s:%s is build %s (%d files, %s)", conn.target, remote.directory,
                 package.build_id, len(package.files), _human(package.size))

        if options.run:
            t = time.monotonic()
            _run_on_target(conn, remote, options, sudo, owner=(uid, gid))
            timings["run"] = time.monotonic() - t
            t = time.monotonic()
            _fetch_results(conn, remote, package)
            timings["fetch"] = time.monotonic() - t
    log.info("deploy done in %.2f s (%s)", time.monotonic() - started,
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))


# --- local side -------------------------------------------------------------------------------

def _check_options(options: argparse.Namespace) -> None:
    if not options.host:
        raise ToolError("deploy needs --host", ExitCode.USAGE)
    if not 0 < options.port < 65536:
        raise ToolError(f"--port {options.port} is not a TCP port", ExitCode.USAGE)
    if not options.timeout > 0:
        raise ToolError("--timeout must be positive", ExitCode.USAGE)
    if not options.remote_python or not options.remote_dir:
        raise ToolError("--remote-python and --remote-dir must not be empty", ExitCode.USAGE)
    if "\0" in options.remote_dir or "\0" in options.remote_python:
        raise ToolError("--remote-dir / --remote-python contain a NUL byte", ExitCode.USAGE)


def _load_package(package_dir: Path, *, run: bool, emulate: bool) -> _Package:
    """Read manifest.json and check every listed file against its sha256 before anything is sent."""
    manifest_path = package_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        build_id = manifest["build_id"]
        listed = manifest["files"]
    except FileNotFoundError:
        raise ToolError(f"{manifest_path} not found: build the package first", ExitCode.USAGE) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"{manifest_path} is unreadable or lacks build_id/files: {exc}", ExitCode.USAGE) from exc
    if not isinstance(listed, dict) or not listed or not isinstance(build_id, str):
        raise ToolError(f"{manifest_path}: 'files' must be a non-empty map and 'build_id' a string",
                        ExitCode.USAGE)
    files: dict[str, str] = {}
    problems: list[str] = []
    size = 0
    for rel, digest in sorted(listed.items()):
        pure = PurePosixPath(rel)
        if (not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel or "\n" in rel
                or str(pure) != rel or rel in ("manifest.json", *RESULT_FILES)):
            raise ToolError(f"{manifest_path}: file name {rel!r} is not a plain relative path of the package",
                            ExitCode.USAGE)
        path = package_dir / rel
        if not path.is_file():
            problems.append(f"{rel} missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel} changed")
        else:
            files[rel] = digest
            size += path.stat().st_size
    if problems:
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ToolError(f"{package_dir} does not match its manifest.json ({shown}): rebuild the package",
                        ExitCode.USAGE)
    if run and "on_target.py" not in files:
        raise ToolError(f"{package_dir} has no on_target.py in its manifest: cannot --run", ExitCode.USAGE)
    if run and not emulate and "hls4ml_nn.bit" not in files:
        raise ToolError(f"{package_dir} has no bitstream (hls4ml_nn.bit): use --emulate, or build it with Vivado",
                        ExitCode.USAGE)
    files["manifest.json"] = sha256_file(manifest_path)
    size += manifest_path.stat().st_size
    return _Package(package_dir, build_id, files, size)


# --- remote side ------------------------------------------------------------------------------

def _sh(*parts: str) -> str:
    return shlex.join(parts)


def _whoami(conn: ssh.Connection) -> tuple[int, int, str]:
    """The login's uid, gid and home folder on the board."""
    result = conn.run("id -u && id -g && printf '%s\\n' \"$HOME\"")
    lines = result.stdout.splitlines()
    try:
        return int(lines[0]), int(lines[1]), lines[2] if len(lines) > 2 else ""
    except (IndexError, ValueError):
        raise ToolError(f"unexpected answer from {conn.target} to 'id -u': {result.output.strip()[:200]!r}",
                        ExitCode.REMOTE_ENVIRONMENT) from None


def _remote_paths(remote_dir: str, home: str) -> _RemotePaths:
    path = remote_dir if remote_dir.startswith("/") else posixpath.join(home or "/", remote_dir)
    path = posixpath.normpath(path)
    name = posixpath.basename(path)
    if path == "/" or name in ("", ".", ".."):
        raise ToolError(f"--remote-dir {remote_dir!r} must name a folder below /", ExitCode.USAGE)
    return _RemotePaths(path, posixpath.dirname(path), name)


def _privilege(conn: ssh.Connection, uid: int) -> tuple[list[str], bytes | None]:
    """How to become root on the board: (command prefix, what to send on stdin)."""
    if uid == 0:
        return [], None
    probe = conn.run(_sh("sudo", "-n", "true"))
    if probe.status == 0:
        return ["sudo", "-n", "--"], None
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
    return ["sudo", "-S", "-k", "-p", "", "--"], secret


def _as_root(sudo: tuple[list[str], bytes | None], command: str) -> str:
    """Wrap ``command`` in a login shell (where PYNQ images set up their venv and XRT), via sudo."""
    return _sh(*sudo[0], "bash", "-lc", command)


def _check_remote_python(conn: ssh.Connection, options: argparse.Namespace,
                         sudo: tuple[list[str], bytes | None]) -> None:
    modules = ["numpy"] if options.emulate else ["numpy", "pynq"]
    result = conn.run(_as_root(sudo, _sh(options.remote_python, "-c", _ENV_CHECK, *modules)), stdin=sudo[1])
    if result.status == 0:
        log.info("board: %s", result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "python ok")
        return
    if result.status in (126, 127):
        raise ToolError(f"{options.remote_python} not found on the board ({_last_line(result.stderr)}); "
                        f"install it or give --remote-python", ExitCode.REMOTE_ENVIRONMENT)
    if result.status == 1 and "missing:" in result.stderr:
        missing = result.stderr.split("missing:", 1)[1].strip()
        hint = "" if options.emulate else " (with --emulate pynq is not needed)"
        raise ToolError(f"{options.remote_python} on the board lacks {missing}{hint}", ExitCode.REMOTE_ENVIRONMENT)
    raise ToolError(f"checking {options.remote_python} on the board failed (exit {result.status}): "
                    f"{_last_line(result.output)}", ExitCode.REMOTE_ENVIRONMENT)


def _prepare(conn: ssh.Connection, remote: _RemotePaths, package: _Package) -> None:
    """Check the parent folder and its free space; remove leftovers of broken deploys."""
    q = shlex.quote
    script = "\n".join([
        f"mkdir -p -- {q(remote.parent)} || exit {_RC_MKDIR}",
        f"[ -d {q(remote.parent)} ] && [ -w {q(remote.parent)} ] || exit {_RC_NOT_WRITABLE}",
        f"if [ -e {q(remote.directory)} ] && [ ! -d {q(remote.directory)} ]; then exit {_RC_NOT_A_DIR}; fi",
        f"rm -rf -- {q(remote.upload_prefix)}*",
        f"if [ -d {q(remote.directory)} ]; then rm -rf -- {q(remote.old_prefix)}*; fi",
        f"df -Pk -- {q(remote.parent)}",
    ])
    result = conn.run(script)
    where = f"{conn.target}:{remote.parent}"
    if result.status == _RC_NOT_A_DIR:
        raise ToolError(f"{conn.target}:{remote.directory} exists and is not a folder", ExitCode.REMOTE_NOT_WRITABLE)
    if result.status in (_RC_MKDIR, _RC_NOT_WRITABLE):
        raise ToolError(f"cannot write to {where}: {_last_line(result.stderr) or 'not writable'} "
                        f"(choose another --remote-dir)", ExitCode.REMOTE_NOT_WRITABLE)
    if result.status != 0:
        raise ToolError(f"preparing {where} failed (exit {result.status}): {_last_line(result.output)}",
                        ExitCode.REMOTE_NOT_WRITABLE)
    free = _df_available(result.stdout)
    if free is not None and free < package.size + DISK_MARGIN_BYTES:
        raise ToolError(f"remote disk full: {_human(free)} free at {where}, the package needs {_human(package.size)}",
                        ExitCode.REMOTE_NOT_WRITABLE)


def _df_available(text: str) -> int | None:
    """Bytes available from ``df -Pk`` output (None when it cannot be read)."""
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return int(lines[-1].split()[-3]) * 1024
    except (IndexError, ValueError):
        return None


class _Progress:
    """Upload progress: a live line on a terminal, one log line per file otherwise."""

    def __init__(self, total: int, count: int, stream=None):
        self.total, self.count = max(total, 1), count
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.done_bytes = self.done_files = 0
        self._current = 0
        self._last_draw = 0.0

    def __call__(self, filename: bytes, size: int, sent: int) -> None:
        self.done_bytes += sent - self._current
        self._current = sent
        if sent >= size:
            self.done_files += 1
            self._current = 0
            if not self.live:
                log.info("  uploaded %s (%s) [%d/%d]", filename.decode(errors="replace"), _human(size),
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


def _scp(conn: ssh.Connection, progress=None) -> SCPClient:
    return SCPClient(conn.transport, socket_timeout=conn.timeout, progress=progress,
                     sanitize=lambda path: shlex.quote(path.decode()).encode())


def _upload(conn: ssh.Connection, package: _Package, remote: _RemotePaths) -> None:
    """Send exactly the manifest's files in one recursive scp into the (new) upload folder.

    A local staging tree of symlinks to the listed files lets one scp channel carry every
    folder (one channel per folder costs a round trip each on the board) without sending
    anything the manifest does not name.
    """
    log.info("uploading %d files (%s) to %s:%s", len(package.files), _human(package.size), conn.target, remote.tmp)
    progress = _Progress(package.size, len(package.files))
    try:
        with tempfile.TemporaryDirectory(prefix="iris-fpga-upload-") as staging_root:
            staging = Path(staging_root) / "package"
            for rel in package.files:
                link = staging / rel
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to((package.directory / rel).resolve())
            for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir() and not p.is_symlink())]:
                folder.chmod(0o755)
            with _scp(conn, progress) as scp:
                # remote.tmp does not exist yet, so scp creates it from the staging folder.
                scp.put(str(staging), remote_path=remote.tmp, recursive=True)
    except SCPException as exc:
        message = str(exc).strip()
        if "No space left" in message or "Disk quota" in message:
            raise ToolError(f"remote disk full while uploading to {conn.target}: {message}",
                            ExitCode.REMOTE_NOT_WRITABLE) from exc
        if "Permission denied" in message or "Read-only" in message:
            raise ToolError(f"cannot write to {conn.target}:{remote.tmp}: {message}",
                            ExitCode.REMOTE_NOT_WRITABLE) from exc
        raise ToolError(f"upload to {conn.target} failed: {message}; the board's previous package is untouched",
                        ExitCode.SSH_UNREACHABLE) from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ToolError(f"upload to {conn.target} broke off: {exc or type(exc).__name__}; "
                        f"the board's previous package is untouched", ExitCode.SSH_UNREACHABLE) from exc
    finally:
        progress.finish()


def _verify_and_swap(conn: ssh.Connection, package: _Package, remote: _RemotePaths, python: str) -> None:
    """On the board: check the upload against the manifest's sha256 sums, then swap it in.

    One remote command: ``sha256sum -c`` (or the remote Python without it) reads the expected
    sums on stdin; only if all match is the previous package renamed aside, the upload renamed
    into its place, and the previous one removed. Until the second rename the old folder is
    the board's package; if that rename fails, the old one is put back.
    """
    q = shlex.quote
    d, tmp, old = q(remote.directory), q(remote.tmp), q(remote.old)
    script = "\n".join([
        f"cd {tmp} || exit {_RC_VERIFY}",
        "if command -v sha256sum >/dev/null 2>&1; then sha256sum -c --quiet --strict -; "
        f"else {_sh(python, '-c', _CHECK_SUMS)}; fi || exit {_RC_VERIFY}",
        "cd / || exit 1",
        f"if [ -e {d} ]; then mv -- {d} {old} || exit {_RC_MOVE_OLD}; fi",
        f"if mv -- {tmp} {d}; then rm -rf -- {old} || exit {_RC_RM_OLD}; exit 0; fi",
        f"if [ -e {old} ]; then mv -- {old} {d}; fi",
        f"exit {_RC_MOVE_NEW}",
    ])
    sums = "".join(f"{digest}  {rel}\n" for rel, digest in package.files.items()).encode()
    result = conn.run(script, stdin=sums)
    if result.status == _RC_VERIFY:
        failed = [line.rsplit(":", 1)[0] for line in result.output.splitlines() if line.endswith("FAILED")
                  or line.endswith("FAILED open or read")]
        shown = ", ".join(failed[:5]) or _last_line(result.output)
        raise ToolError(f"the copy on {conn.target} does not match manifest.json ({shown}): remote disk full or "
                        f"failing? The board's previous package is untouched", ExitCode.REMOTE_NOT_WRITABLE)
    if result.status == _RC_RM_OLD:
        log.warning("the previous package was replaced but %s:%s could not be removed: %s",
                    conn.target, remote.old, _last_line(result.stderr))
    elif result.status != 0:
        raise ToolError(f"cannot move the upload into {conn.target}:{remote.directory}: "
                        f"{_last_line(result.stderr) or f'exit {result.status}'}", ExitCode.REMOTE_NOT_WRITABLE)
    log.info("checked %d sha256 sums on the board and moved the upload into place", len(package.files))


def _discard(conn: ssh.Connection, path: str) -> None:
    """Best effort: remove a temporary remote folder (a later deploy removes it otherwise)."""
    transport = conn.transport
    if transport is None or not transport.is_active():
        return
    try:
        conn.run(_sh("rm", "-rf", "--", path), timeout=min(conn.timeout, 30))
    except ToolError as exc:
        log.debug("could not remove %s: %s", path, exc)


def _run_on_target(conn: ssh.Connection, remote: _RemotePaths, options: argparse.Namespace,
                   sudo: tuple[list[str], bytes | None], owner: tuple[int, int]) -> None:
    limit = max(1, int(round(options.timeout)))
    args = ["--emulate"] if options.emulate else []
    # -u: stream output as it comes; -B: no root-owned __pycache__ in the user's folder.
    # coreutils timeout stops on_target.py on the board too, not just our wait for it.
    command = _sh("timeout", "-k", "5", str(limit), options.remote_python, "-u", "-B", "on_target.py", *args)
    inner = f"cd {shlex.quote(remote.directory)} && exec {command}"
    if sudo[0]:
        # Run through sudo, on_target.py writes y_hw.* as root (mode 0600): give them back to the
        # login user, or they could not be fetched nor removed by the next deploy.
        inner = (f"cd {shlex.quote(remote.directory)} || exit 1\n{command}\nstatus=$?\n"
                 f"chown -- {owner[0]}:{owner[1]} {' '.join(map(shlex.quote, RESULT_FILES))} 2>/dev/null\n"
                 f"exit $status")
    log.info("running on_target.py%s on %s (output follows)", " --emulate" if args else "", conn.target)
    started = time.monotonic()
    result = conn.run(_as_root(sudo, inner), stdin=sudo[1], timeout=limit + 15,
                      stream_to=(sys.stdout, sys.stderr))
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


def _fetch_results(conn: ssh.Connection, remote: _RemotePaths, package: _Package) -> None:
    """Bring y_hw.npy and y_hw.json back; install them only if they belong to this build."""
    with tempfile.TemporaryDirectory(dir=package.directory, prefix=".fetch-") as tmp:
        name = RESULT_FILES[0]
        try:
            with _scp(conn) as scp:
                for name in RESULT_FILES:
                    scp.get(posixpath.join(remote.directory, name), local_path=str(Path(tmp) / name))
        except SCPException as exc:
            raise ToolError(f"on_target.py reported success but {conn.target} has no {name}: {str(exc).strip()}",
                            ExitCode.BOARD) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ToolError(f"fetching {name} from {conn.target} broke off: {exc}", ExitCode.SSH_UNREACHABLE) from exc
        record_bytes = (Path(tmp) / "y_hw.json").read_bytes()
        array_bytes = (Path(tmp) / "y_hw.npy").read_bytes()
        try:
            record = json.loads(record_bytes)
            remote_build = record["build_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolError(f"y_hw.json from {conn.target} is not a valid record: {exc}", ExitCode.BOARD) from exc
        _check_npy(Path(tmp) / "y_hw.npy")
        if remote_build != package.build_id:
            raise ToolError(f"y_hw.json on {conn.target} is from build {remote_build}, the package is build "
                            f"{package.build_id}: not fetched", ExitCode.CHECK_FAILED)
        # The array first, its record last: a record in package/ always has its data beside it.
        atomic_write_bytes(package.directory / "y_hw.npy", array_bytes)
        atomic_write_bytes(package.directory / "y_hw.json", record_bytes)
    log.info("fetched y_hw.npy and y_hw.json (build %s, mode %s) into %s", remote_build,
             record.get("mode", "?"), package.directory)


def _check_npy(path: Path) -> None:
    import numpy as np  # noqa: PLC0415 - only needed after a run

    try:
        np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ToolError(f"y_hw.npy from the board is unreadable: {exc}", ExitCode.BOARD) from exc


# --- helpers ----------------------------------------------------------------------------------

def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _log_tail(output: str) -> None:
    lines = output.rstrip().splitlines()[-TAIL_LINES:]
    if lines:
        log.error("last %d lines of on_target.py output:\n%s", len(lines), "\n".join(f"  | {l}" for l in lines))


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def main(argv: list[str] | None = None) -> int:
    """``python -m iris_fpga.deploy PACKAGE --host HOST ...`` (until BuildModel.py routes --from deploy)."""
    parser = argparse.ArgumentParser(prog="python -m iris_fpga.deploy",
                                     description="Copy a built package/ to a PYNQ board over SSH, "
                                                 "optionally run on_target.py there and fetch y_hw.")
    parser.add_argument("package_dir", nargs="?", type=Path, default=Path("package"),
                        help="package folder (default: %(default)s)")
    add_deploy_arguments(parser)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        deploy(options.package_dir, options)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("error: interrupted; the board's previous package is untouched unless the final rename "
              "had already happened", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
