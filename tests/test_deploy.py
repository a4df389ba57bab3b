"""Deploy over SSH against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

Every deploy logs in as a throwaway non-root user made for this test session (its name carries
the pid), whose home is a scratch folder under /tmp: no test can reach a real folder of this
machine, and canary files beside every remote target show that refusals touch nothing. The
remote Python is the test's own interpreter (or, when the user cannot read it, the system's
python3 of the same version with this environment's packages). Deploys run as users run them,
through ``BuildModel.py --from deploy`` with a package built elsewhere; the few that break the
network or the disk on purpose call ``deploy.deploy`` in-process.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iris_fpga import deploy as deploy_module
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import sha256_file
from sshd import SshServer, make_key, require_sshd, require_throwaway_users

REPO = Path(__file__).resolve().parents[1]
BUILD_A = "0123456789abcdef"
BUILD_B = "fedcba9876543210"
# A folder name a shell would happily misread: spaces, ';', '$(...)', backquotes and a quote.
NASTY_NAME = "iris on; fpga $(touch PWNED) `touch PWNED2` it's"

# Stand-in for on_target.py, driven by standin.json, to test deploy's side of a remote run.
STANDIN = '''\
import json, os, shutil, sys, time
from pathlib import Path
cfg = json.loads(Path("standin.json").read_text())
build = json.loads(Path("manifest.json").read_text())["build_id"]
for i in range(cfg.get("lines", 3)):
    print(f"stand-in line {i}", flush=True)
if cfg.get("print"):  # a hostile board's output
    print(cfg["print"], flush=True)
print("stand-in argv", sys.argv[1:], file=sys.stderr, flush=True)
if cfg.get("sleep"):
    os.makedirs("__pycache__", exist_ok=True)  # an allowed extra: the next deploy may replace it
    Path("__pycache__/pid").write_text(str(os.getpid()))
    for made in ("__pycache__", "__pycache__/pid"):  # run as root by sudo: give them to the login
        os.chown(made, os.stat(".").st_uid, os.stat(".").st_gid)
    time.sleep(cfg["sleep"])
if cfg.get("exit", 0):
    sys.exit(cfg["exit"])
shutil.copy("y_hls.npy", "y_hw.npy")
if cfg.get("array_hex"):  # a hostile board
    Path("y_hw.npy").write_bytes(bytes.fromhex(cfg["array_hex"]))
Path("y_hw.json").write_text(cfg.get("record_text") or json.dumps(
    {"build_id": cfg.get("build_id") or build, "mode": "emulation" if "--emulate" in sys.argv else "board"}))
'''


# --- the throwaway login and its board ----------------------------------------------------------

@dataclass
class Login:
    server: SshServer
    name: str
    home: Path
    python: str  # what --remote-python gets

    def chown(self, path: Path) -> None:
        for p in [path, *path.rglob("*")]:
            os.lchown(p, *self.ids)

    @property
    def ids(self) -> tuple[int, int]:
        info = self.home.stat()
        return info.st_uid, info.st_gid


def _remote_python(name: str, scratch: Path) -> str:
    """The test's Python if the user can run it with numpy, else the system python3 of the same
    version with this environment's packages on its path (a root-only pyenv, for instance)."""
    def works(python: str) -> bool:
        return subprocess.run(["runuser", "-u", name, "--", python, "-c", "import numpy"],
                              capture_output=True, cwd="/").returncode == 0
    if works(sys.executable):
        return sys.executable
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/bin")
    wrapper = scratch / "python3"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={sysconfig.get_paths()["purelib"]} exec {system} "$@"\n')
    wrapper.chmod(0o755)
    if system is None or not works(str(wrapper)):
        pytest.skip(f"the throwaway user can run neither {sys.executable} nor a system Python with numpy")
    return str(wrapper)


@pytest.fixture(scope="module")
def login():
    """A non-root user for this session, home in a scratch folder, with an sshd that lets it in."""
    require_sshd()
    require_throwaway_users()
    scratch = Path(tempfile.mkdtemp(prefix="iris-fpga-deploy-"))  # outside pytest's root-only folders
    name = f"irisdep{os.getpid()}"
    home = scratch / "home"
    sudoers = Path("/etc/sudoers.d") / name
    try:
        scratch.chmod(0o755)
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-p", "*", name],
                       check=True, capture_output=True)
        home.mkdir()
        shutil.chown(home, name, name)
        if shutil.which("sudo"):  # like the PYNQ image's login: sudo for on_target.py
            sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
            sudoers.chmod(0o440)
        server = SshServer(scratch / "sshd", user=name).start()
        (scratch / "sshd").chmod(0o755)
        server.authorized_keys.chmod(0o644)  # sshd reads it as the login user
        try:
            yield Login(server, name, home, _remote_python(name, scratch))
        finally:
            server.stop()
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _run_args(login, known_hosts, remote, *extra):
    """--run needs root on the board: the login's sudo, as on a PYNQ image."""
    require_sudo()
    return [*base_args(login, known_hosts, remote), "--run", "--emulate", *extra]


def require_sudo() -> None:
    if shutil.which("sudo") is None:
        reason = "remote runs need sudo for the throwaway login: apt-get install sudo (make system-deps does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " -- CI=true, so this is a failure, not a skip", pytrace=False)
        pytest.skip(reason)


CANARIES = {"canary.txt": "a user's file beside the target", "my notebooks/analysis.ipynb": "{}"}


@pytest.fixture
def board(login) -> Path:
    """A folder of the login's home for one test, with canary files that no deploy may touch."""
    root = login.home / f"board-{secrets.token_hex(4)}"
    for rel, text in CANARIES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    login.chown(root)
    yield root
    assert_canaries(root)


def assert_canaries(root: Path) -> None:
    assert {rel: (root / rel).read_text() for rel in CANARIES} == CANARIES


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry below ``folder``: files by sha256, links by target, folders as such."""
    state = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        state[rel] = (f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else sha256_file(p))
    return state


# --- packages -----------------------------------------------------------------------------------

def make_package(built, folder: Path, build_id: str = BUILD_A, standin: dict | None = None,
                 on_target: Path | None = None) -> Path:
    """A small package/: the real build's data and driver, an on_target.py, a manifest of this
    tool's form with sha256 sums, and one file the manifest does not list (never sent)."""
    folder.mkdir(parents=True)
    for name in ("X_test.npy", "y_test.npy", "y_hls.npy", "y_keras.npy"):
        shutil.copy(built.package_dir / name, folder / name)
    shutil.copy(built.output_dir / "axi_stream_driver.py", folder / "axi_stream_driver.py")
    if on_target is not None:
        shutil.copy(on_target, folder / "on_target.py")
    else:
        (folder / "on_target.py").write_text(STANDIN)
        (folder / "standin.json").write_text(json.dumps(standin or {}))
    (folder / "notes in a subfolder").mkdir()
    (folder / "notes in a subfolder" / "a;b $x.txt").write_text(build_id)
    write_manifest(folder, build_id)
    (folder / "not in the manifest.txt").write_text("must not be uploaded")
    return folder


def write_manifest(folder: Path, build_id: str = BUILD_A) -> None:
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
             and p.name != "manifest.json" and p.name != "not in the manifest.txt"}
    (folder / "manifest.json").write_text(json.dumps(
        {"build_id": build_id, "created": "2026-11-25T00:00:00+00:00", "settings": {}, "versions": {},
         "files": files}))


@pytest.fixture
def package(built, tmp_path) -> Path:
    return make_package(built, tmp_path / "package")


def remote_state(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_state(package: Path) -> dict[str, str]:
    files = dict(json.loads((package / "manifest.json").read_text())["files"])
    files["manifest.json"] = sha256_file(package / "manifest.json")
    return files


def leftovers(remote_dir: Path) -> list[str]:
    """What deploy made beside the target: upload and old folders, the lock."""
    return sorted(p.name for p in remote_dir.parent.iterdir() if p.name.startswith(f".{remote_dir.name}."))


# --- running deploy -------------------------------------------------------------------------------

def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "IRIS_FPGA_SSH_PASSWORD")}


def base_args(login: Login, known_hosts: Path, remote_dir, *, key: Path | None = None) -> list[str]:
    server = login.server
    return ["--host", server.host, "--port", str(server.port), "--user", login.name,
            "--key", str(key or server.client_key), "--known-hosts", str(known_hosts),
            "--remote-dir", str(remote_dir), "--remote-python", login.python, "--timeout", "20"]


def run_deploy(package: Path, args: list[str], timeout: float = 120, env: dict | None = None,
               wait: bool = True):
    """``python BuildModel.py --from deploy`` with a package built elsewhere and no pipeline state."""
    work = package.parent / f"workdir-{secrets.token_hex(3)}"  # where BuildModel runs: nothing of the build
    work.mkdir()
    command = [sys.executable, str(REPO / "BuildModel.py"), "--from", "deploy", "--package-dir", str(package),
               "--output-dir", str(work / "out"), *args]
    if not wait:
        return subprocess.Popen(command, cwd=work, env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    return subprocess.run(command, cwd=work, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(result) -> str:
    """stderr of a failed command: exactly one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def deploy_in_process(monkeypatch, package: Path, args: list[str]) -> int:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("IRIS_FPGA_SSH_PASSWORD", raising=False)
    parser = argparse.ArgumentParser()
    deploy_module.add_deploy_arguments(parser)
    try:
        deploy_module.deploy(package, deploy_module.DeployTarget.from_options(parser.parse_args(args)))
    except ToolError as exc:
        return exc.code
    return 0


@pytest.fixture
def known_hosts(login, tmp_path) -> Path:
    return login.server.write_known_hosts(tmp_path / "known_hosts")


# --- copy -----------------------------------------------------------------------------------------

def test_copy_only_manifest_files_into_folder_named_literally(login, board, package, known_hosts, tmp_path):
    remote = board / NASTY_NAME
    result = run_deploy(package, base_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert remote_state(remote) == expected_state(package)  # not "not in the manifest.txt"
    assert leftovers(remote) == []  # no upload folder, no lock file
    for home in (login.home, tmp_path, package.parent, board):
        assert not (home / "PWNED").exists() and not (home / "PWNED2").exists()
    assert "uploaded" in result.stdout and "checked" in result.stdout  # progress and verification shown
    assert not (package.parent / "hls4ml_prj_pynq").exists()


def _board_holds_build_a(built, login, known_hosts, tmp_path, remote) -> Path:
    """Deploy a package of build A to ``remote``; return a package of build B, ready to follow it."""
    first = make_package(built, tmp_path / "a" / "package", BUILD_A)
    result = run_deploy(first, base_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    return make_package(built, tmp_path / "b" / "package", BUILD_B)


LEFT_ON_THE_BOARD = ("y_hw.npy", "y_hw.json", "on_target.ipynb", "__pycache__/on_target.cpython-311.pyc",
                     "previous/0123/y_hw.json", ".ipynb_checkpoints/on_target-checkpoint.ipynb")


def _leave_on_the_board(login, remote: Path, text: str = "left on the board by a run or by Jupyter") -> None:
    for rel in LEFT_ON_THE_BOARD:
        (remote / rel).parent.mkdir(parents=True, exist_ok=True)
        (remote / rel).write_text(text)
    login.chown(remote)


def test_redeploy_keeps_what_the_board_holds(built, login, board, known_hosts, tmp_path):
    """Results never fetched and the edited notebook of build A go to previous/A/; previous/ and
    .ipynb_checkpoints/ stay; only __pycache__ (Python makes it again) goes; the output says so."""
    remote = board / "iris_on_fpga"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    _leave_on_the_board(login, remote)
    result = run_deploy(second, base_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    kept = {rel: sha256_file(remote / rel) for rel in (
        f"previous/{BUILD_A}/y_hw.npy", f"previous/{BUILD_A}/y_hw.json", f"previous/{BUILD_A}/on_target.ipynb",
        "previous/0123/y_hw.json", ".ipynb_checkpoints/on_target-checkpoint.ipynb")}
    assert remote_state(remote) == {**expected_state(second), **kept}
    assert {(remote / rel).read_text() for rel in kept} == {"left on the board by a run or by Jupyter"}
    assert f"kept from the board's previous package (build {BUILD_A})" in result.stdout
    assert f"previous/{BUILD_A}/y_hw.npy" in result.stdout and ".ipynb_checkpoints/" in result.stdout
    assert leftovers(remote) == []


def test_redeploy_of_the_same_build_keeps_its_results_in_place(login, board, package, known_hosts):
    remote = board / "pkg"
    assert run_deploy(package, base_args(login, known_hosts, remote)).returncode == 0
    _leave_on_the_board(login, remote, "results of this very build")
    result = run_deploy(package, base_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert (remote / "y_hw.npy").read_text() == (remote / "y_hw.json").read_text() == "results of this very build"
    assert (remote / "previous" / BUILD_A / "on_target.ipynb").read_text() == "results of this very build"
    assert not (remote / "__pycache__").exists() and leftovers(remote) == []


def test_a_second_move_into_previous_never_overwrites_the_first(built, login, board, known_hosts, tmp_path):
    remote = board / "pkg"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    first = tmp_path / "a" / "package"
    for round, package in enumerate((second, first, second), 1):
        if package is second:  # results of build A, never fetched
            (remote / "y_hw.npy").write_text(f"round {round}")
            login.chown(remote)
        result = run_deploy(package, base_args(login, known_hosts, remote))
        assert result.returncode == 0, result.stderr
    assert (remote / "previous" / BUILD_A / "y_hw.npy").read_text() == "round 1"
    assert (remote / "previous" / f"{BUILD_A}-2" / "y_hw.npy").read_text() == "round 3"


def test_home_relative_and_tilde_remote_dirs_are_under_the_login_home(login, board, package, known_hosts):
    for given in (f"~/{board.name}/by tilde", f"{board.name}/relative"):
        result = run_deploy(package, base_args(login, known_hosts, given))
        assert result.returncode == 0, result.stderr
        assert remote_state(login.home / given.removeprefix("~/")) == expected_state(package)
    assert not (login.home / "~").exists() and not Path("~").exists()


def test_remote_folder_not_writable(login, board, package, known_hosts):
    blocker = board / "a file"
    blocker.write_text("a regular file where a folder should be")
    login.chown(blocker)
    result = run_deploy(package, base_args(login, known_hosts, blocker / "iris; x"))
    assert result.returncode == ExitCode.REMOTE_NOT_WRITABLE, result.stderr
    assert "cannot write to" in one_line_error(result)
    assert blocker.read_text() == "a regular file where a folder should be"


def test_remote_disk_too_small_is_refused_before_copying(login, board, package, known_hosts, monkeypatch):
    """The free-space check reads the board's real statvfs; a margin beyond any disk makes it full."""
    monkeypatch.setattr(deploy_module, "DISK_MARGIN_BYTES", 1 << 60)
    remote = board / "pkg"
    assert deploy_in_process(monkeypatch, package, base_args(login, known_hosts, remote)) \
        == ExitCode.REMOTE_NOT_WRITABLE
    assert not remote.exists() and leftovers(remote) == []


def test_package_that_does_not_match_its_manifest_is_not_sent(login, board, package, known_hosts):
    (package / "X_test.npy").write_bytes(b"changed after the manifest was written")
    remote = board / "pkg"
    result = run_deploy(package, base_args(login, known_hosts, remote))
    assert result.returncode == ExitCode.USAGE
    assert "X_test.npy changed" in one_line_error(result)
    assert not remote.exists()


# --- nothing lost: what deploy refuses to replace ---------------------------------------------------

def _refused(result, board: Path, before: dict, *fragments: str) -> None:
    assert result.returncode == ExitCode.REMOTE_NOT_WRITABLE, result.stdout[-2000:] + result.stderr
    line = one_line_error(result)
    assert all(f in line for f in fragments), line
    assert snapshot(board) == before  # nothing changed, nothing added (no lock, no upload)
    assert_canaries(board)


def test_folder_of_a_users_notebooks_is_refused_and_untouched(login, board, package, known_hosts):
    before = snapshot(board)
    result = run_deploy(package, base_args(login, known_hosts, board / "my notebooks"))
    _refused(result, board, before, str(board / "my notebooks"), "no manifest.json")


@pytest.mark.parametrize("given, why", [(".", "home"), ("~", "home"), ("~/", "home"), ("/", "top-level"),
                                        ("/etc", "top-level"), ("/tmp", "top-level"), ("..", "holds the login")])
def test_home_root_and_system_folders_are_refused(login, board, package, known_hosts, given, why):
    before = snapshot(login.home), sorted(os.listdir(login.home.parent))
    result = run_deploy(package, base_args(login, known_hosts, given))
    assert result.returncode == ExitCode.REMOTE_NOT_WRITABLE, result.stderr
    assert why in one_line_error(result)
    assert (snapshot(login.home), sorted(os.listdir(login.home.parent))) == before


def test_a_strangers_manifest_is_refused(login, board, package, known_hosts):
    stranger = board / "project"
    stranger.mkdir()
    (stranger / "manifest.json").write_text(json.dumps({"build_id": "x", "files": {"data.csv": "0" * 64}}))
    (stranger / "data.csv").write_text("a,b\n")
    login.chown(stranger)
    before = snapshot(board)
    result = run_deploy(package, base_args(login, known_hosts, stranger))
    _refused(result, board, before, "not a manifest of this tool")


@pytest.mark.parametrize("intruder", ["notes.txt", "emulation/", "link"])
def test_our_package_with_anything_more_is_refused(built, login, board, known_hosts, tmp_path, intruder):
    remote = board / "pkg"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    if intruder == "link":
        (remote / "etc").symlink_to("/etc")  # removing it would be harmless, but it is not ours
    elif intruder.endswith("/"):
        (remote / intruder / "keep.txt").parent.mkdir()
        (remote / intruder / "keep.txt").write_text("a user's file")
    else:
        (remote / intruder).write_text("a user's file")
    login.chown(remote)
    before = snapshot(board)
    result = run_deploy(second, base_args(login, known_hosts, remote))
    _refused(result, board, before, "not part of a package of this tool", intruder.rstrip("/").replace("link", "etc"))


def test_a_file_or_link_at_the_target_is_refused(login, board, package, known_hosts):
    (board / "to etc").symlink_to("/etc")
    os.lchown(board / "to etc", *login.ids)
    before = snapshot(board)
    result = run_deploy(package, base_args(login, known_hosts, board / "to etc"))
    _refused(result, board, before, "top-level")  # the link resolves to /etc
    result = run_deploy(package, base_args(login, known_hosts, board / "canary.txt"))
    _refused(result, board, before, "is a file, not a folder")


def test_look_alike_upload_folders_and_lock_files_are_left_alone(login, board, package, known_hosts):
    """Only uploads this tool marked are ever removed; a lock file not of this tool is in the way."""
    look_alike = board / ".pkg.upload-0123abcd"
    look_alike.mkdir()
    (look_alike / "keep.txt").write_text("a user's file")
    login.chown(look_alike)
    result = run_deploy(package, base_args(login, known_hosts, board / "pkg"))
    assert result.returncode == 0, result.stderr
    assert (look_alike / "keep.txt").read_text() == "a user's file"

    (board / ".other.lock").write_text("a user's notes, named like a lock")
    login.chown(board)
    before = snapshot(board)
    result = run_deploy(package, base_args(login, known_hosts, board / "other"))
    _refused(result, board, before, ".other.lock", "not a lock of this tool")


@pytest.mark.parametrize("given", ["pkg\nrm -rf ~", "pkg\r", "pkg\tx", "\x1b[2Jpkg", "pkg\x7f"])
def test_control_characters_in_remote_paths_are_refused(login, board, package, known_hosts, given):
    before = snapshot(board)
    result = run_deploy(package, base_args(login, known_hosts, f"{board}/{given}"))
    assert result.returncode == ExitCode.USAGE
    assert "control character" in one_line_error(result)
    assert snapshot(board) == before


def test_tilde_of_another_user_is_refused(login, board, package, known_hosts):
    result = run_deploy(package, base_args(login, known_hosts, "~root/pkg"))
    assert result.returncode == ExitCode.USAGE and "~name" in one_line_error(result)


# --- one deploy at a time -------------------------------------------------------------------------

def test_two_concurrent_deploys_take_turns(built, login, board, known_hosts, tmp_path):
    remote = board / "pkg"
    packages = [make_package(built, tmp_path / name / "package", build) for name, build
                in (("a", BUILD_A), ("b", BUILD_B))]
    running = [run_deploy(p, base_args(login, known_hosts, remote), wait=False) for p in packages]
    results = [(p.wait(timeout=120), p.communicate()) for p in running]
    assert [code for code, _ in results] == [0, 0], [err for _, (_, err) in results]
    assert remote_state(remote) in [expected_state(p) for p in packages]  # one whole package, not a mix
    assert leftovers(remote) == []


def test_a_deploy_waits_for_the_one_running_or_is_refused(built, login, board, known_hosts, tmp_path):
    remote = board / "pkg"
    slow = make_package(built, tmp_path / "slow" / "package", BUILD_A, standin={"sleep": 6})
    first = run_deploy(slow, [*base_args(login, known_hosts, remote), "--run", "--emulate"], wait=False)
    deadline = time.monotonic() + 60
    while not (remote / "__pycache__" / "pid").exists():  # the first one is running on_target.py, holding the lock
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    other = make_package(built, tmp_path / "other" / "package", BUILD_B)
    args = base_args(login, known_hosts, remote)
    refused = run_deploy(other, [*args[:-1], "2"])  # --timeout 2: gives up waiting
    assert refused.returncode == ExitCode.REMOTE_NOT_WRITABLE
    assert "another deploy" in one_line_error(refused)
    waited = run_deploy(other, args)  # --timeout 20: waits for the first, then replaces its package
    assert first.wait(timeout=60) == 0, first.communicate()
    assert json.loads((slow / "y_hw.json").read_text())["build_id"] == BUILD_A  # the first run was whole
    assert waited.returncode == 0, waited.stderr
    fetched = {f"previous/{BUILD_A}/{name}": sha256_file(slow / name) for name in ("y_hw.npy", "y_hw.json")}
    assert remote_state(remote) == {**expected_state(other), **fetched}  # the first run's results, kept
    assert leftovers(remote) == []


# --- races on the board: nothing lost ----------------------------------------------------------------

def _paused_deploy(package: Path, args: list[str], point: str, pause: Path):
    """A deploy stopped at the board's pause ``point`` (iris_fpga/testpause.py): it has made ``pause``."""
    process = run_deploy(package, args, wait=False, env={"IRIS_FPGA_TEST_PAUSE": f"{point}:{pause}"})
    deadline = time.monotonic() + 60
    while not pause.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("point", ["board-copied", "board-removing"])
def test_a_file_written_during_the_swap_is_never_lost(built, login, board, known_hosts, tmp_path, point):
    """After the carry-over copy the old package goes back whole; during its removal, it is kept."""
    remote = board / "pkg"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    before = remote_state(remote)
    pause = board / ".pause"
    process = _paused_deploy(second, base_args(login, known_hosts, remote), point, pause)
    old, = board.glob(".pkg.old-*")
    (old / "written meanwhile.txt").write_text("a board process's file")
    os.lchown(old / "written meanwhile.txt", *login.ids)
    pause.unlink()
    code, (out, err) = process.wait(timeout=60), process.communicate()
    if point == "board-copied":
        assert code == ExitCode.REMOTE_NOT_WRITABLE, err
        assert "written meanwhile.txt appeared" in err.strip().splitlines()[-1]
        written = sha256_file(remote / "written meanwhile.txt")
        assert remote_state(remote) == {**before, "written meanwhile.txt": written}
        assert leftovers(remote) == []
    else:
        assert code == 0, err
        assert remote_state(remote) == expected_state(second)
        assert leftovers(remote) == [old.name] and sorted(os.listdir(old)) == ["written meanwhile.txt"]
        assert f"kept as {login.name}@" in out and old.name in out


@pytest.mark.parametrize("name, code", [("log.txt", ExitCode.REMOTE_NOT_WRITABLE), ("y_hw.npy", 0)])
def test_a_file_written_into_the_board_package_during_the_upload_is_never_lost(built, login, board, known_hosts,
                                                                                tmp_path, monkeypatch, name, code):
    """A stranger appearing meanwhile keeps the old package in place; a run's result is carried."""
    remote = board / "pkg"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    before = remote_state(remote)
    real_upload = deploy_module._upload

    def upload_while_the_board_writes(conn, package, remote_paths):
        real_upload(conn, package, remote_paths)
        (remote / name).write_text("written on the board during the upload")
        os.lchown(remote / name, *login.ids)

    monkeypatch.setattr(deploy_module, "_upload", upload_while_the_board_writes)
    assert deploy_in_process(monkeypatch, second, base_args(login, known_hosts, remote)) == code
    written = sha256_file(remote / (name if code else f"previous/{BUILD_A}/{name}"))
    assert remote_state(remote) == ({**before, name: written} if code else
                                    {**expected_state(second), f"previous/{BUILD_A}/{name}": written})
    assert leftovers(remote) == []


# --- a copy that breaks off ---------------------------------------------------------------------

def test_connection_lost_midway_leaves_previous_package(built, login, board, known_hosts, tmp_path, monkeypatch):
    remote = board / "iris on; fpga"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    before = remote_state(remote)

    real_connect, real_progress = deploy_module.ssh.connect, deploy_module._Progress.__call__
    connections, broken = [], []

    def connect_and_keep(*args, **kwargs):
        connections.append(real_connect(*args, **kwargs))
        return connections[-1]

    def after_two_files(progress, filename, size, sent):
        real_progress(progress, filename, size, sent)
        if progress.done_files >= 2 and not broken:
            broken.append(filename)
            connections[-1].transport.close()  # the network goes away in the middle of the copy

    monkeypatch.setattr(deploy_module.ssh, "connect", connect_and_keep)
    monkeypatch.setattr(deploy_module._Progress, "__call__", after_two_files)
    code = deploy_in_process(monkeypatch, second, base_args(login, known_hosts, remote))
    assert broken and code == ExitCode.SSH_UNREACHABLE
    assert remote_state(remote) == before  # build A, untouched
    assert any(".upload-" in name for name in leftovers(remote))  # the half copy, aside

    monkeypatch.undo()
    result = run_deploy(second, base_args(login, known_hosts, remote))  # the lock died with the connection
    assert result.returncode == 0, result.stderr
    assert remote_state(remote) == expected_state(second)
    assert leftovers(remote) == []  # the next deploy cleared the half copy


def test_upload_failing_its_checksum_leaves_previous_package(built, login, board, known_hosts, tmp_path,
                                                             monkeypatch):
    remote = board / "pkg"
    second = _board_holds_build_a(built, login, known_hosts, tmp_path, remote)
    before = remote_state(remote)
    real_upload = deploy_module._upload

    def upload_then_damage(conn, package, remote_paths):
        real_upload(conn, package, remote_paths)
        # one byte short on the board, as after a full disk that the copy did not notice
        damaged = Path(remote_paths.upload) / "X_test.npy"
        damaged.write_bytes(damaged.read_bytes()[:-1])

    monkeypatch.setattr(deploy_module, "_upload", upload_then_damage)
    code = deploy_in_process(monkeypatch, second, base_args(login, known_hosts, remote))
    assert code == ExitCode.REMOTE_NOT_WRITABLE
    assert remote_state(remote) == before
    assert leftovers(remote) == []  # the connection was alive, so the bad copy was removed


# --- nothing bypassed: what deploy sends and the options it takes ----------------------------------

@pytest.mark.parametrize("kind", ["link inside", "link outside", "fifo", "folder"])
def test_listed_file_that_is_not_a_regular_file_is_refused(login, board, package, known_hosts, tmp_path, kind):
    driver = package / "axi_stream_driver.py"
    edited = tmp_path / "edited_driver.py"
    edited.write_text(driver.read_text() + "\n# edited outside the package\n")
    driver.unlink()
    if kind == "link inside":
        driver.symlink_to(package / "on_target.py")
    elif kind == "link outside":
        driver.symlink_to(edited)
    elif kind == "fifo":
        os.mkfifo(driver)
    else:
        driver.mkdir()
    remote = board / "pkg"
    result = run_deploy(package, base_args(login, known_hosts, remote), timeout=60)
    assert result.returncode == ExitCode.USAGE
    assert "axi_stream_driver.py" in one_line_error(result)
    assert not remote.exists()  # nothing sent, so no symlink's target ever reached the board


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "0", "-5", "86401"])
def test_timeout_must_be_finite_positive_seconds(package, tmp_path, value):
    result = run_deploy(package, ["--host", "127.0.0.1", "--known-hosts", str(tmp_path / "kh"), "--timeout", value])
    assert result.returncode == ExitCode.USAGE
    assert "--timeout" in one_line_error(result)


def test_bad_lines_in_known_hosts_are_skipped_like_openssh(login, board, package, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    good = login.server.known_hosts_line()
    known_hosts.write_bytes(b"[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n"  # truncated key
                            b"garbage \xff\xfe line\n" + good.encode() + good.encode()[:40])
    result = run_deploy(package, base_args(login, known_hosts, board / "pkg"))
    assert result.returncode == 0, result.stderr
    assert "skipped lines 1, 2, 4" in result.stdout


@pytest.mark.parametrize("content", [b"not a key\n", b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\n", None])
def test_bad_key_file_is_an_input_error(login, board, package, known_hosts, tmp_path, content):
    key = tmp_path / "key"
    if content is None:
        make_key(key)
        key = key.with_name("key.pub")  # a public key given as the private one
    else:
        key.write_bytes(content)
    result = run_deploy(package, base_args(login, known_hosts, board / "pkg", key=key))
    assert result.returncode == ExitCode.USAGE
    assert "--key" in one_line_error(result)


# --- host keys and authentication -----------------------------------------------------------------

def test_unknown_host_key_is_refused_with_its_fingerprint(login, board, package, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    remote = board / "pkg"
    result = run_deploy(package, base_args(login, known_hosts, remote))
    assert result.returncode == ExitCode.SSH_HOST_KEY
    assert login.server.host_fingerprint in result.stderr and "--trust-new-host" in one_line_error(result)
    assert known_hosts.read_text() == "" and not remote.exists()

    trusted = run_deploy(package, [*base_args(login, known_hosts, remote), "--trust-new-host"])
    assert trusted.returncode == 0, trusted.stderr
    assert known_hosts.read_text() == login.server.known_hosts_line()
    again = run_deploy(package, base_args(login, known_hosts, remote))  # recorded: no flag needed now
    assert again.returncode == 0, again.stderr


def test_changed_host_key_is_always_refused(login, board, package, tmp_path):
    impostor = make_key(tmp_path / "other_host_key", "impostor")
    known_hosts = tmp_path / "known_hosts"
    line = f"[{login.server.host}]:{login.server.port} {' '.join(impostor.split()[:2])}\n"
    known_hosts.write_text(line)
    remote = board / "pkg"
    for extra in ([], ["--trust-new-host"]):
        result = run_deploy(package, [*base_args(login, known_hosts, remote), *extra])
        assert result.returncode == ExitCode.SSH_HOST_KEY
        assert "HOST KEY CHANGED" in one_line_error(result) and login.server.host_fingerprint in result.stderr
    assert known_hosts.read_text() == line and not remote.exists()


def test_wrong_key_is_an_authentication_error(login, board, package, known_hosts, tmp_path):
    stranger = tmp_path / "stranger_key"
    make_key(stranger, "not authorized")
    result = run_deploy(package, base_args(login, known_hosts, board / "pkg", key=stranger), timeout=60)
    assert result.returncode == ExitCode.SSH_AUTH
    assert "authentication failed" in one_line_error(result)


def test_closed_port_is_unreachable(login, board, package, known_hosts):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = base_args(login, known_hosts, board / "pkg")
    args[args.index("--port") + 1] = str(port)
    result = run_deploy(package, [*args, "--timeout", "3"], timeout=30)
    assert result.returncode == ExitCode.SSH_UNREACHABLE
    assert "cannot reach" in one_line_error(result)


def test_silent_host_times_out(package, tmp_path):
    """A listener that accepts but never speaks SSH: the connect timeout ends it, not a hang."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("")
        result = run_deploy(package, ["--host", "127.0.0.1", "--port", str(port), "--known-hosts", str(known_hosts),
                                      "--remote-dir", "pkg", "--timeout", "2"], timeout=30)
    assert result.returncode == ExitCode.SSH_UNREACHABLE, result.stderr


# --- remote run -------------------------------------------------------------------------------------

def test_run_streams_output_and_fetches_results(built, login, board, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"lines": 5})
    result = run_deploy(package, _run_args(login, known_hosts, board / NASTY_NAME))
    assert result.returncode == 0, result.stderr
    streamed = [line for line in result.stdout.splitlines() if line.startswith("stand-in line")]
    assert streamed == [f"stand-in line {i}" for i in range(5)]
    assert "stand-in argv ['--emulate']" in result.stderr
    record = json.loads((package / "y_hw.json").read_text())
    assert record == {"build_id": BUILD_A, "mode": "emulation"}
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert not list(package.glob(".fetch-*"))


@pytest.mark.parametrize("code", [1, 3, 4])
def test_failing_on_target_gives_its_exit_code_and_tail(built, login, board, known_hosts, tmp_path, code):
    package = make_package(built, tmp_path / "package", standin={"lines": 40, "exit": code})
    result = run_deploy(package, _run_args(login, known_hosts, board / "pkg"))
    assert result.returncode == code, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: on_target.py failed") and f"exit code {code}" in error
    assert "last 20 lines of on_target.py output" in result.stdout and "| stand-in line 39" in result.stdout
    assert not (package / "y_hw.npy").exists() and not (package / "y_hw.json").exists()


def test_results_of_another_build_are_refused(built, login, board, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"build_id": BUILD_B})
    (package / "y_hw.json").write_text('{"build_id": "kept as it was"}')
    result = run_deploy(package, _run_args(login, known_hosts, board / "pkg"))
    assert result.returncode == ExitCode.CHECK_FAILED
    error = result.stderr.strip().splitlines()[-1]  # after the board's own stderr
    assert error.startswith("error: ") and BUILD_B in error and BUILD_A in error
    assert (package / "y_hw.json").read_text() == '{"build_id": "kept as it was"}'
    assert not (package / "y_hw.npy").exists()


def _npy_header(shape: tuple) -> bytes:
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("standin, what", [
    ({"record_text": "[" * 100_000 + "]" * 100_000}, "y_hw.json"),
    ({"record_text": '{"build_id": ' + "9" * 5000 + "}"}, "y_hw.json"),
    ({"record_text": '{"mode": []}'}, "y_hw.json"),
    ({"array_hex": _npy_header((10**11, 3)).hex()}, "y_hw.npy"),
])
def test_hostile_results_from_the_board_are_one_line_and_not_installed(built, login, board, known_hosts, tmp_path,
                                                                        standin, what):
    package = make_package(built, tmp_path / "package", standin=standin)
    result = run_deploy(package, _run_args(login, known_hosts, board / "pkg"))
    assert result.returncode == ExitCode.USAGE, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and what in error and "Traceback" not in result.stderr
    assert not (package / "y_hw.npy").exists() and not (package / "y_hw.json").exists()


def test_run_is_stopped_at_the_timeout(built, login, board, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"sleep": 120})
    result = run_deploy(package, [*_run_args(login, known_hosts, board / "pkg"), "--timeout", "3"], timeout=60)
    assert result.returncode == ExitCode.SSH_UNREACHABLE, result.stderr
    assert "did not finish within 3 s" in result.stderr
    pid = int((board / "pkg" / "__pycache__" / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # the board side was stopped too, not just our wait
        os.kill(pid, 0)


@pytest.mark.parametrize("python, missing", [("/nonexistent/python3", "not found"),
                                             ("NUMPY_LESS", "lacks numpy")])
def test_remote_python_without_numpy_is_an_environment_error(login, board, package, known_hosts, python, missing):
    if python == "NUMPY_LESS":
        python = shutil.which("python3", path="/usr/bin:/bin") or pytest.skip("no system python3")
        if subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0:
            pytest.skip(f"{python} has numpy")
    remote = board / "pkg"
    args = _run_args(login, known_hosts, remote)
    args[args.index("--remote-python") + 1] = python
    result = run_deploy(package, args)
    assert result.returncode == ExitCode.REMOTE_ENVIRONMENT, result.stderr
    assert missing in one_line_error(result)
    assert not remote.exists()  # checked before anything was copied


def test_board_run_needs_pynq(login, board, package, known_hosts):
    (package / "hls4ml_nn.bit").write_bytes(b"not a real bitstream")
    write_manifest(package)
    result = run_deploy(package, [*base_args(login, known_hosts, board / "pkg"), "--run"])
    assert result.returncode == ExitCode.REMOTE_ENVIRONMENT, result.stderr
    assert "pynq" in one_line_error(result)


def test_board_run_without_bitstream_is_a_usage_error(package, tmp_path):
    result = run_deploy(package, ["--host", "127.0.0.1", "--port", "1", "--run", "--known-hosts", str(tmp_path / "kh")])
    assert result.returncode == ExitCode.USAGE and "--emulate" in one_line_error(result)


def test_buildmodel_deploys_a_package_built_elsewhere_runs_fetches_and_validates(built, login, board,
                                                                                known_hosts, tmp_path):
    """The whole path of a user without a board: only package/ (no pipeline state beside it), with
    the repository's on_target.py, deployed by ``BuildModel.py --from deploy``, run in emulation on
    the loopback host, fetched, then checked by utilities/validate_model.py."""
    package = tmp_path / "elsewhere" / "package"
    shutil.copytree(built.package_dir, package)
    remote = board / NASTY_NAME
    result = run_deploy(package, _run_args(login, known_hosts, remote))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "[emulation]" in result.stdout + result.stderr  # the board's output, streamed back
    record = json.loads((package / "y_hw.json").read_text())
    assert record["build_id"] == built.manifest["build_id"] and record["mode"] == "emulation"
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert remote_state(remote)["y_hw.npy"] == sha256_file(package / "y_hw.npy")
    report = subprocess.run([sys.executable, str(REPO / "utilities" / "validate_model.py"), str(package), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr
    assert json.loads(report.stdout)["exit_code"] == 0


@pytest.mark.parametrize("code", [0, 1])
def test_what_the_board_prints_is_escaped(built, login, board, known_hosts, tmp_path, code):
    """A board cannot clear the screen, recolour a line or forge one: its output and the tail shown
    after a failure pass through ``printable``, one board line per line."""
    forged = "\x1b[2J\x1b[H\x1b[1;32mPASS\x1b[0m all checks\rerror: none\x07\x9b31m"
    package = make_package(built, tmp_path / "package", standin={"print": forged, "lines": 1, "exit": code})
    result = run_deploy(package, _run_args(login, known_hosts, board / "pkg"))
    assert result.returncode == code, result.stderr
    shown = result.stdout + result.stderr
    assert not any(c in shown for c in "\x1b\r\x07\x9b")
    assert "\\x1b[2J\\x1b[H\\x1b[1;32mPASS\\x1b[0m all checks\\rerror: none\\x07\\x9b31m" in result.stdout
    assert "stand-in line 0\n" in result.stdout


# --- options --------------------------------------------------------------------------------------

def test_deploy_arguments_make_one_target():
    parser = argparse.ArgumentParser()
    deploy_module.add_deploy_arguments(parser)
    target = deploy_module.DeployTarget.from_options(parser.parse_args(["--host", "h", "--emulate"]))
    assert target.emulate and target.user == "xilinx" and target.port == 22
    assert target.remote_dir == "/home/xilinx/jupyter_notebooks/iris_on_fpga"
    with pytest.raises(SystemExit):
        parser.parse_args(["--password", "x"])  # no way to put a password on the command line


# --- a login that is not root: sudo with the password on stdin -------------------------------------

def test_run_through_sudo_with_password_on_stdin(built, tmp_path):
    """A second throwaway user, home in a scratch folder, whose sudo asks for a password."""
    require_sshd()
    require_throwaway_users()
    if not shutil.which("sudo") or not shutil.which("chpasswd"):
        pytest.skip("the sudo path needs sudo and chpasswd on this machine (make system-deps installs sudo)")
    name, password = f"irissudo{os.getpid()}", f"pw {secrets.token_hex(8)}"
    shared = Path(tempfile.mkdtemp(prefix="iris-fpga-sudo-"))  # outside pytest's 0700 folders
    sudoers = Path("/etc/sudoers.d") / name
    try:
        shared.chmod(0o755)
        subprocess.run(["useradd", "-M", "-d", str(shared / "home"), "-s", "/bin/bash", name],
                       check=True, capture_output=True)
        (shared / "home").mkdir()
        shutil.chown(shared / "home", name, name)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
        sudoers.chmod(0o440)
        srv = SshServer(shared / "sshd", user=name).start()
        try:
            (shared / "sshd").chmod(0o755)
            srv.authorized_keys.chmod(0o644)
            login = Login(srv, name, shared / "home", _remote_python(name, shared))
            known_hosts = srv.write_known_hosts(tmp_path / "known_hosts")
            package = make_package(built, tmp_path / "package", standin={"lines": 2})
            args = _run_args(login, known_hosts, login.home / "iris; sudo")
            wrong = run_deploy(package, args, env={"IRIS_FPGA_SSH_PASSWORD": "not it"})
            assert wrong.returncode == ExitCode.SSH_AUTH and "sudo" in one_line_error(wrong)
            result = run_deploy(package, args, env={"IRIS_FPGA_SSH_PASSWORD": password})
            assert result.returncode == 0, result.stderr
            assert password not in result.stdout + result.stderr
            assert json.loads((package / "y_hw.json").read_text())["build_id"] == BUILD_A
            results = [login.home / "iris; sudo" / f for f in ("y_hw.npy", "y_hw.json")]
            assert {p.owner() for p in results} == {name}  # given back by deploy, not left to root
        finally:
            srv.stop()
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-f", name], capture_output=True)
        shutil.rmtree(shared, ignore_errors=True)
