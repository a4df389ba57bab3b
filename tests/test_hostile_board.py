"""A hostile board cannot reach the workstation: whatever it answers, deploy writes only its results.

The board is a throwaway login on a loopback sshd whose ForceCommand is tests/hostile_board.py: it
answers scp downloads with raw records (folders, ``..``, absolute names, oversize, truncated and
unterminated records), turns the results into links, FIFOs, folders and huge files, or speaks a
lying SFTP. The workstation side runs as a second throwaway non-root user (runuser), with the
package in that user's scratch home and canary files, with their modes, above and beside it: a
deploy that followed the board's names could reach nothing of this machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iris_fpga.errors import ExitCode
from iris_fpga.fileio import MAX_NPY_BYTES, sha256_file
from sshd import SshServer, require_sshd, require_throwaway_users
from test_deploy import BUILD_A, REPO, _remote_python, require_sudo, write_manifest

STANDIN = '''\
import json, shutil
from pathlib import Path
print("stand-in ran", flush=True)
shutil.copy("y_hls.npy", "y_hw.npy")
build = json.loads(Path("manifest.json").read_text())["build_id"]
Path("y_hw.json").write_text(json.dumps({"build_id": build, "mode": "emulation"}))
'''


def _records(*lines: bytes, end: bytes = b"") -> str:
    return (b"".join(lines) + end).hex()


# The attack, and every other kind of scp record a board can send for a download.
SCP_RECORDS = {
    "folders and ..": _records(b"D0755 0 y_hw.npy\n", b"D0755 0 ..\n", b"D0755 0 ..\n",
                               b"C0644 14 PWNED_BY_BOARD\n", b"pwned by board\x00", b"C0644 2 manifest.json\n",
                               b"{}\x00", b"E\n", b"E\n", b"E\n"),
    "absolute name": _records(b"C0644 5 /tmp/PWNED_BY_BOARD\n", b"pwned\x00"),
    "oversize": _records(b"C0644 99999999999999 y_hw.npy\n", b"A" * 4096),
    "truncated": _records(b"C0644 1000 y_hw.npy\n", b"only a little"),
    "unterminated": _records(b"C0644 14 PWNED_BY_BOARD"),
    "time and link-like": _records(b"T1 0 1 0\n", b"C0777 9 ../../../etc/passwd\n", b"root::0:\x00"),
}


@dataclass
class Hostile:
    server: SshServer
    board_user: str
    board_home: Path
    board_python: str
    ws_user: str
    ws_home: Path
    ws_python: str


def _add_user(name: str, home: Path) -> None:
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-p", "*", name], check=True,
                   capture_output=True)
    home.mkdir()
    shutil.chown(home, name, name)


@pytest.fixture(scope="module")
def hostile():
    """The hostile board's login and sshd, and the workstation's throwaway user."""
    require_sshd()
    require_throwaway_users()
    require_sudo()
    scratch = Path(tempfile.mkdtemp(prefix="iris-fpga-hostile-"))
    board_user, ws_user = f"irishb{os.getpid()}", f"irisws{os.getpid()}"
    sudoers = Path("/etc/sudoers.d") / board_user
    try:
        scratch.chmod(0o755)
        _add_user(board_user, scratch / "board")
        _add_user(ws_user, scratch / "workstation")
        sudoers.write_text(f"{board_user} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        script = scratch / "hostile_board.py"
        shutil.copy(Path(__file__).with_name("hostile_board.py"), script)
        script.chmod(0o644)
        server = SshServer(scratch / "sshd", user=board_user, force_command=f"/usr/bin/python3 {script}").start()
        (scratch / "sshd").chmod(0o755)
        server.authorized_keys.chmod(0o644)
        try:
            board_python = _remote_python(board_user, scratch / "sshd")
            yield Hostile(server, board_user, scratch / "board", board_python, ws_user, scratch / "workstation",
                          _remote_python(ws_user, scratch))
        finally:
            server.stop()
    finally:
        sudoers.unlink(missing_ok=True)
        for name in (board_user, ws_user):
            subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666


def tree(folder: Path) -> dict[str, tuple]:
    """Every entry below ``folder`` (and itself): kind, mode, and content or link target."""
    state = {}
    for p in [folder, *sorted(folder.rglob("*"))]:
        info = p.lstat()
        content = (os.readlink(p) if stat.S_ISLNK(info.st_mode) else sha256_file(p) if stat.S_ISREG(info.st_mode)
                   else None)
        state[p.relative_to(folder.parent).as_posix()] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                         content)
    return state


@dataclass
class Case:
    package: Path
    board: Path
    work: Path


@pytest.fixture
def case(hostile) -> Case:
    """A package in the workstation user's home, canaries above and beside it, a board folder."""
    token = secrets.token_hex(4)
    top = hostile.ws_home / f"case-{token}"
    package = top / "deploys" / "package"
    package.mkdir(parents=True)
    np.save(package / "y_hls.npy", np.arange(12, dtype=np.int32).reshape(4, 3))
    (package / "on_target.py").write_text(STANDIN)
    write_manifest(package, BUILD_A)
    canaries = {hostile.ws_home / "canary above.txt": 0o640, top / "canary.txt": 0o600,
                top / "deploys" / "manifest.json": 0o644, top / "deploys" / "y_hw.npy": 0o604}
    for path, mode in canaries.items():
        path.write_text(f"canary {path.name}")
        path.chmod(mode)
    (top / "work").mkdir()
    (top / "ssh").mkdir()
    shutil.copy(hostile.server.client_key, top / "ssh" / "id_ed25519")
    hostile.server.write_known_hosts(top / "ssh" / "known_hosts")
    board = hostile.board_home / f"board-{token}"
    board.mkdir()
    (board / "canary.txt").write_text("a user's file on the board")
    for path in [hostile.ws_home, *hostile.ws_home.rglob("*")]:
        os.lchown(path, *_ids(hostile.ws_home))
    for path in [board, *board.rglob("*")]:
        os.lchown(path, *_ids(hostile.board_home))
    return Case(package, board, top / "work")


def _ids(home: Path) -> tuple[int, int]:
    return home.stat().st_uid, home.stat().st_gid


def deploy_as_workstation_user(hostile: Hostile, case: Case, scenario: dict, timeout: int = 20, run: bool = True):
    """``BuildModel.py --from deploy [--run --emulate]`` as the workstation's throwaway user, in
    ``case.work``."""
    scenario_file = hostile.board_home / "scenario.json"
    scenario_file.write_text(json.dumps({"dir": str(case.board / "pkg"), **scenario}))
    os.chown(scenario_file, *_ids(hostile.board_home))
    (hostile.board_home / "requests.log").unlink(missing_ok=True)
    ssh = case.work.parent / "ssh"
    server = hostile.server
    command = ["runuser", "-u", hostile.ws_user, "--", "env", f"HOME={hostile.ws_home}", hostile.ws_python,
               str(REPO / "BuildModel.py"), "--from", "deploy", "--package-dir", str(case.package),
               "--output-dir", str(case.work / "out"), "--host", server.host, "--port", str(server.port),
               "--user", hostile.board_user, "--key", str(ssh / "id_ed25519"),
               "--known-hosts", str(ssh / "known_hosts"),
               "--remote-dir", str(case.board / "pkg"), "--remote-python", hostile.board_python,
               "--timeout", str(timeout), *(["--run", "--emulate"] if run else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "IRIS_FPGA_SSH_PASSWORD")}
    process = subprocess.Popen(command, cwd=case.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the session started here: runuser and the deploy under it
        out, err = process.communicate()
        pytest.fail(f"deploy did not end within 120 s: {err[-2000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def requests(hostile: Hostile) -> list[str]:
    return (hostile.board_home / "requests.log").read_text().splitlines()


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stdout[-2000:] + result.stderr[-3000:]
    return lines[0]


def assert_untouched(hostile: Hostile, case: Case, before: dict, fetched: bool) -> None:
    after = tree(hostile.ws_home)  # the working folder too: deploy writes nothing but its results
    results = {case.package.relative_to(hostile.ws_home.parent).as_posix() + "/" + n for n in ("y_hw.npy", "y_hw.json")}
    assert {n: s for n, s in after.items() if n not in results} == before
    assert {n for n in after if n in results} == (results if fetched else set())
    assert not list(Path("/tmp").glob("PWNED*"))
    assert (case.board / "canary.txt").read_text() == "a user's file on the board"
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666


@pytest.mark.parametrize("records", SCP_RECORDS.values(), ids=SCP_RECORDS.keys())
def test_scp_records_from_the_board_are_never_asked_for(hostile, case, records):
    """Every scp download is answered with hostile records and every scp upload with a forged
    error: deploy asks for neither, so the package goes and the results come over SFTP, whole and
    checked, and nothing else appears anywhere."""
    before = tree(hostile.ws_home)
    forged = b"\x01\x1b[2J\x1b[1;32mPASS\x1b[0m\nD0755 0 ..\n".hex()
    result = deploy_as_workstation_user(hostile, case, {"scp_f": records, "scp_t": forged})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not [r for r in requests(hostile) if r.startswith("scp ")]
    assert_untouched(hostile, case, before, fetched=True)
    np.testing.assert_array_equal(np.load(case.package / "y_hw.npy"), np.load(case.package / "y_hls.npy"))


def test_a_refused_upload_is_one_escaped_line(hostile, case):
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {"sftp": {"target": "", "lie": "refuse upload"}})
    assert result.returncode == ExitCode.REMOTE_NOT_WRITABLE, result.stderr[-2000:]
    assert "\x1b" not in result.stdout + result.stderr and "does not match manifest.json" in error_line(result)
    assert_untouched(hostile, case, before, fetched=False)


FILES = {
    "npy links to /etc/passwd": ({"y_hw.npy": "link:/etc/passwd"}, "symbolic link"),
    "npy links to ..": ({"y_hw.npy": "link:.."}, "symbolic link"),
    "json is a FIFO": ({"y_hw.json": "fifo"}, "not a regular file"),
    "npy is a folder": ({"y_hw.npy": "dir"}, "folder"),
    "npy is huge": ({"y_hw.npy": f"sparse:{MAX_NPY_BYTES + 1}"}, "larger than"),
    "npy holds scp records": ({"y_hw.npy": b"D0755 0 ..\nC0644 14 PWNED_BY_BOARD\n".hex()}, "not a .npy"),
}


@pytest.mark.parametrize("files, why", FILES.values(), ids=FILES.keys())
def test_results_that_are_no_plain_files_are_refused(hostile, case, files, why):
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {"files": files})
    assert result.returncode == ExitCode.USAGE, result.stderr[-2000:]
    assert why in error_line(result)
    assert_untouched(hostile, case, before, fetched=False)


LIES = {
    "size: says 10 bytes, sends without end": ("y_hw.json", "size", ExitCode.USAGE, "larger than"),
    "more than asked for": ("y_hw.json", "more", ExitCode.USAGE, "larger than"),
    "no type or size": ("y_hw.npy", "untyped", ExitCode.USAGE, "no type or size"),
    "a link once opened": ("y_hw.npy", "link", ExitCode.USAGE, "symbolic link"),
    "scp records as data": ("y_hw.npy", "records", ExitCode.USAGE, "not a .npy"),
    "garbage packet": ("y_hw.npy", "garbage", ExitCode.USAGE, "not one a file server gives"),
    "truncated packet": ("y_hw.npy", "truncated", ExitCode.USAGE, "not one a file server gives"),
    "string longer than its packet": ("y_hw.npy", "short", ExitCode.USAGE, "y_hw.npy"),
    "silent": ("y_hw.npy", "silent", ExitCode.SSH_UNREACHABLE, "--timeout"),
    "answers to requests never made": ("y_hw.npy", "flood", ExitCode.SSH_UNREACHABLE, "--timeout"),
}


@pytest.mark.parametrize("target, lie, code, why", LIES.values(), ids=LIES.keys())
def test_a_lying_sftp_server_is_refused_in_one_line(hostile, case, target, lie, code, why):
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {"sftp": {"target": target, "lie": lie}}, timeout=6)
    assert result.returncode == code, result.stderr[-2000:]
    assert why in error_line(result)
    assert_untouched(hostile, case, before, fetched=False)


def test_deploy_writes_only_the_package_and_runs_from_a_folder_it_cannot_write(hostile, case):
    before = tree(hostile.ws_home)
    case.work.chmod(0o555)
    result = deploy_as_workstation_user(hostile, case, {})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert_untouched(hostile, case, before | {case.work.relative_to(hostile.ws_home.parent).as_posix():
                                              (stat.S_IFDIR, 0o555, None)}, fetched=True)


def test_a_read_only_package_is_refused_before_the_board_runs_anything(hostile, case):
    case.package.chmod(0o555)
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {})
    assert result.returncode == ExitCode.USAGE
    assert "cannot write to" in error_line(result) and "--run" in error_line(result)
    assert not (case.board / "pkg").exists()
    assert_untouched(hostile, case, before, fetched=False)
    copied = deploy_as_workstation_user(hostile, case, {}, run=False)  # a copy alone needs no writing
    assert copied.returncode == 0, copied.stderr[-2000:]
    assert_untouched(hostile, case, before, fetched=False)


ANSWERS = {
    "free is not a number": ({"begin": {"free": "plenty", "removed": []}}, ExitCode.REMOTE_ENVIRONMENT,
                             "malformed answer to begin (free)"),
    "escape codes in a path": ({"inspect": {"home": "/home/x", "real": "/\x1b[2J\x1b[1;32mPASS", "kind": "absent"}},
                               ExitCode.REMOTE_NOT_WRITABLE, "\\x1b[2J\\x1b[1;32mPASS"),
    "entries of the wrong shape": ({"inspect": {"home": "/home/x", "real": "/a/b", "kind": "dir", "id": "1:2",
                                                "entries": [[1, 2]]}}, ExitCode.REMOTE_ENVIRONMENT,
                                   "malformed answer to inspect (entries)"),
}


@pytest.mark.parametrize("answers, code, why", ANSWERS.values(), ids=ANSWERS.keys())
def test_answers_of_the_wrong_shape_are_one_escaped_line(hostile, case, answers, code, why):
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {"answers": answers})
    assert result.returncode == code, result.stderr[-2000:]
    assert why in error_line(result) and "\x1b" not in result.stdout + result.stderr
    assert_untouched(hostile, case, before, fetched=False)


def test_attributes_claiming_four_billion_extensions_do_not_hold_deploy(hostile, case):
    """paramiko's own parser would loop 2^32 times (beyond any timeout); deploy reads only what it needs."""
    before = tree(hostile.ws_home)
    result = deploy_as_workstation_user(hostile, case, {"sftp": {"target": "", "lie": "extended"}}, timeout=6)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_untouched(hostile, case, before, fetched=True)
