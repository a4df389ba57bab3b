"""Deploy over SSH against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The loopback "board" is this machine: the remote folder is a tmp_path, and the remote Python is
the one running the tests (the system python3 that a non-login shell finds has no numpy).
Most tests deploy a small package made by ``make_package`` from the session's real build, with a
stand-in on_target.py that can be told to fail; one deploys the real package with the real
on_target.py through ``BuildModel.py --from deploy`` and validates what comes back.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iris_fpga import deploy as deploy_module
from iris_fpga.errors import ExitCode
from iris_fpga.fileio import sha256_file
from conftest import run_buildmodel
from sshd import SshServer, make_key, require_sshd

REPO = Path(__file__).resolve().parents[1]
ON_TARGET = REPO / "on_target.py"
BUILD_A = "0123456789abcdef"
BUILD_B = "fedcba9876543210"
# A folder name a shell would happily misread: spaces, ';', '$(...)', backquotes and a quote.
NASTY_NAME = "iris on; fpga $(touch PWNED) `touch PWNED2` it's"

# Stand-in for on_target.py, driven by standin.json, to test deploy's side of a remote run.
STANDIN = '''\
import json, os, sys, time
from pathlib import Path
import numpy as np
cfg = json.loads(Path("standin.json").read_text())
build = json.loads(Path("manifest.json").read_text())["build_id"]
for i in range(cfg.get("lines", 3)):
    print(f"stand-in line {i}", flush=True)
print("stand-in argv", sys.argv[1:], file=sys.stderr, flush=True)
if cfg.get("sleep"):
    Path("pid").write_text(str(os.getpid()))
    time.sleep(cfg["sleep"])
if cfg.get("exit", 0):
    sys.exit(cfg["exit"])
np.save("y_hw.npy", np.load("y_hls.npy"), allow_pickle=False)
Path("y_hw.json").write_text(json.dumps({"build_id": cfg.get("build_id") or build,
                                         "mode": "emulation" if "--emulate" in sys.argv else "board"}))
'''


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_sshd()
    srv = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield srv
    srv.stop()


def make_package(built, folder: Path, build_id: str = BUILD_A, standin: dict | None = None,
                 on_target: Path | None = None, emulation: bool = False) -> Path:
    """A small package/: the real build's data and driver, an on_target.py, a manifest with sha256 sums."""
    folder.mkdir(parents=True)
    for name in ("X_test.npy", "y_test.npy", "y_hls.npy", "y_keras.npy"):
        shutil.copy(built.package_dir / name, folder / name)
    shutil.copy(built.output_dir / "axi_stream_driver.py", folder / "axi_stream_driver.py")
    if on_target is not None:
        shutil.copy(on_target, folder / "on_target.py")
    else:
        (folder / "on_target.py").write_text(STANDIN)
        (folder / "standin.json").write_text(json.dumps(standin or {}))
    if emulation:
        from iris_fpga.emulation import stage

        stage(folder, built.output_dir)
    (folder / "notes in a subfolder").mkdir()
    (folder / "notes in a subfolder" / "a;b $x.txt").write_text(build_id)
    files = {p.relative_to(folder).as_posix(): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}
    (folder / "manifest.json").write_text(json.dumps({"build_id": build_id, "files": files}))
    (folder / "not in the manifest.txt").write_text("must not be uploaded")
    return folder


@pytest.fixture
def package(built, tmp_path) -> Path:
    return make_package(built, tmp_path / "package")


@pytest.fixture
def known_hosts(server, tmp_path) -> Path:
    return server.write_known_hosts(tmp_path / "known_hosts")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "IRIS_FPGA_SSH_PASSWORD")}
    env["PYTHONPATH"] = str(REPO)
    return env


def base_args(server: SshServer, known_hosts: Path, remote_dir: Path, *, key: Path | None = None) -> list[str]:
    return ["--host", server.host, "--port", str(server.port), "--user", server.user,
            "--key", str(key or server.client_key), "--known-hosts", str(known_hosts),
            "--remote-dir", str(remote_dir), "--remote-python", sys.executable, "--timeout", "20"]


def run_deploy(package: Path, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m iris_fpga.deploy PACKAGE ...`` as a user runs it (BuildModel --from deploy later)."""
    return subprocess.run([sys.executable, "-m", "iris_fpga.deploy", str(package), *args],
                          cwd=package.parent, env=_env(), capture_output=True, text=True, timeout=timeout)


def remote_state(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def expected_state(package: Path) -> dict[str, str]:
    files = dict(json.loads((package / "manifest.json").read_text())["files"])
    files["manifest.json"] = sha256_file(package / "manifest.json")
    return files


def leftovers(remote_dir: Path) -> list[str]:
    return sorted(p.name for p in remote_dir.parent.iterdir() if p.name.startswith(f".{remote_dir.name}."))


# --- copy -----------------------------------------------------------------------------------------

def test_copy_only_manifest_files_into_folder_named_literally(server, package, known_hosts, tmp_path):
    remote = tmp_path / "board" / NASTY_NAME
    result = run_deploy(package, base_args(server, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert remote.is_dir()
    assert remote_state(remote) == expected_state(package)  # not "not in the manifest.txt"
    assert leftovers(remote) == []
    for home in (Path.home(), tmp_path, package.parent):
        assert not (home / "PWNED").exists() and not (home / "PWNED2").exists()
    assert sorted(p.name for p in remote.parent.iterdir()) == [NASTY_NAME]
    assert "uploaded" in result.stderr and "checked" in result.stderr  # progress and verification shown


def _board_holds_build_a(built, server, known_hosts, tmp_path, remote) -> Path:
    """Deploy a package of build A to ``remote``; return a package of build B, ready to follow it."""
    first = make_package(built, tmp_path / "a" / "package", BUILD_A)
    assert run_deploy(first, base_args(server, known_hosts, remote)).returncode == 0
    return make_package(built, tmp_path / "b" / "package", BUILD_B)


def test_redeploy_replaces_the_previous_package(built, server, known_hosts, tmp_path):
    remote = tmp_path / "board" / "iris_on_fpga"
    second = _board_holds_build_a(built, server, known_hosts, tmp_path, remote)
    (remote / "y_hw.npy").write_bytes(b"a result of build A on the board")
    result = run_deploy(second, base_args(server, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert remote_state(remote) == expected_state(second)
    assert leftovers(remote) == []


def test_relative_remote_dir_is_under_the_login_home(server, package, known_hosts, tmp_path):
    relative = f"iris-fpga-test-{tmp_path.name}/pkg"
    try:
        result = run_deploy(package, base_args(server, known_hosts, Path(relative)))
        assert result.returncode == 0, result.stderr
        assert remote_state(Path.home() / relative) == expected_state(package)
    finally:
        shutil.rmtree(Path.home() / relative.split("/")[0], ignore_errors=True)


def test_remote_folder_not_writable(server, package, known_hosts, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("a regular file where a folder should be")
    result = run_deploy(package, base_args(server, known_hosts, blocker / "iris; x"))
    assert result.returncode == ExitCode.REMOTE_NOT_WRITABLE, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write to")


def test_remote_disk_too_small_is_refused_before_copying(server, package, known_hosts, tmp_path, monkeypatch):
    """The free-space check reads the board's real ``df``; a margin beyond any disk makes it full."""
    monkeypatch.setattr(deploy_module, "DISK_MARGIN_BYTES", 1 << 60)
    remote = tmp_path / "board" / "pkg"
    code = _deploy_in_process(monkeypatch, package, base_args(server, known_hosts, remote))
    assert code == ExitCode.REMOTE_NOT_WRITABLE
    assert not remote.exists() and leftovers(remote) == []


def test_package_that_does_not_match_its_manifest_is_not_sent(server, package, known_hosts, tmp_path):
    (package / "X_test.npy").write_bytes(b"changed after the manifest was written")
    remote = tmp_path / "board" / "pkg"
    result = run_deploy(package, base_args(server, known_hosts, remote))
    assert result.returncode == ExitCode.USAGE
    assert "X_test.npy changed" in result.stderr
    assert not remote.parent.exists()


# --- a copy that breaks off ---------------------------------------------------------------------

def _deploy_in_process(monkeypatch, package, args) -> int:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("IRIS_FPGA_SSH_PASSWORD", raising=False)
    return deploy_module.main([str(package), *args])


def test_connection_lost_midway_leaves_previous_package(built, server, known_hosts, tmp_path, monkeypatch):
    remote = tmp_path / "board" / "iris on; fpga"
    second = _board_holds_build_a(built, server, known_hosts, tmp_path, remote)
    before = remote_state(remote)

    real_scp = deploy_module._scp
    broken = []

    def scp_that_loses_the_connection(conn, progress=None):
        def after_two_files(filename, size, sent):
            progress(filename, size, sent)
            if progress.done_files >= 2 and not broken:
                broken.append(filename)
                conn.transport.close()  # the network goes away in the middle of the copy
        return real_scp(conn, after_two_files if progress else None)

    monkeypatch.setattr(deploy_module, "_scp", scp_that_loses_the_connection)
    code = _deploy_in_process(monkeypatch, second, base_args(server, known_hosts, remote))
    assert broken and code == ExitCode.SSH_UNREACHABLE
    assert remote_state(remote) == before  # build A, untouched
    assert any(".upload-" in name for name in leftovers(remote))  # the half copy, aside

    monkeypatch.setattr(deploy_module, "_scp", real_scp)
    result = run_deploy(second, base_args(server, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert remote_state(remote) == expected_state(second)
    assert leftovers(remote) == []  # the next deploy cleared the half copy


def test_upload_failing_its_checksum_leaves_previous_package(built, server, known_hosts, tmp_path, monkeypatch):
    remote = tmp_path / "board" / "pkg"
    second = _board_holds_build_a(built, server, known_hosts, tmp_path, remote)
    before = remote_state(remote)

    real_upload = deploy_module._upload

    def upload_then_damage(conn, package, remote_paths):
        real_upload(conn, package, remote_paths)
        # one byte short on the board, as after a full disk that scp did not notice
        damaged = Path(remote_paths.tmp) / "X_test.npy"
        damaged.write_bytes(damaged.read_bytes()[:-1])

    monkeypatch.setattr(deploy_module, "_upload", upload_then_damage)
    code = _deploy_in_process(monkeypatch, second, base_args(server, known_hosts, remote))
    assert code == ExitCode.REMOTE_NOT_WRITABLE
    assert remote_state(remote) == before
    assert leftovers(remote) == []  # the connection was alive, so the bad copy was removed


# --- host keys and authentication -----------------------------------------------------------------

def test_unknown_host_key_is_refused_with_its_fingerprint(server, package, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    remote = tmp_path / "board" / "pkg"
    result = run_deploy(package, base_args(server, known_hosts, remote))
    assert result.returncode == ExitCode.SSH_HOST_KEY
    assert server.host_fingerprint in result.stderr and "--trust-new-host" in result.stderr
    assert known_hosts.read_text() == "" and not remote.parent.exists()

    trusted = run_deploy(package, [*base_args(server, known_hosts, remote), "--trust-new-host"])
    assert trusted.returncode == 0, trusted.stderr
    assert known_hosts.read_text() == server.known_hosts_line()
    again = run_deploy(package, base_args(server, known_hosts, remote))  # recorded: no flag needed now
    assert again.returncode == 0, again.stderr


def test_changed_host_key_is_always_refused(server, package, tmp_path):
    impostor = make_key(tmp_path / "other_host_key", "impostor")
    known_hosts = tmp_path / "known_hosts"
    line = f"[{server.host}]:{server.port} {' '.join(impostor.split()[:2])}\n"
    known_hosts.write_text(line)
    remote = tmp_path / "board" / "pkg"
    for extra in ([], ["--trust-new-host"]):
        result = run_deploy(package, [*base_args(server, known_hosts, remote), *extra])
        assert result.returncode == ExitCode.SSH_HOST_KEY
        assert "HOST KEY CHANGED" in result.stderr and server.host_fingerprint in result.stderr
    assert known_hosts.read_text() == line and not remote.parent.exists()


def test_wrong_key_is_an_authentication_error(server, package, known_hosts, tmp_path):
    stranger = tmp_path / "stranger_key"
    make_key(stranger, "not authorized")
    result = run_deploy(package, base_args(server, known_hosts, tmp_path / "board", key=stranger), timeout=60)
    assert result.returncode == ExitCode.SSH_AUTH
    assert "authentication failed" in result.stderr


def test_closed_port_is_unreachable(server, package, known_hosts, tmp_path):
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = base_args(server, known_hosts, tmp_path / "board")
    args[args.index("--port") + 1] = str(port)
    result = run_deploy(package, [*args, "--timeout", "3"], timeout=30)
    assert result.returncode == ExitCode.SSH_UNREACHABLE
    assert "cannot reach" in result.stderr


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
                                      "--remote-dir", str(tmp_path / "board"), "--timeout", "2"], timeout=30)
    assert result.returncode == ExitCode.SSH_UNREACHABLE, result.stderr


# --- remote run -------------------------------------------------------------------------------------

def _run_args(server, known_hosts, remote, *extra):
    return [*base_args(server, known_hosts, remote), "--run", "--emulate", *extra]


def test_run_streams_output_and_fetches_results(built, server, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"lines": 5})
    remote = tmp_path / "board" / NASTY_NAME
    result = run_deploy(package, _run_args(server, known_hosts, remote))
    assert result.returncode == 0, result.stderr
    assert [f"stand-in line {i}" for i in range(5)] == result.stdout.splitlines()[:5]
    assert "stand-in argv ['--emulate']" in result.stderr
    record = json.loads((package / "y_hw.json").read_text())
    assert record == {"build_id": BUILD_A, "mode": "emulation"}
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert not list(package.glob(".fetch-*"))


@pytest.mark.parametrize("code", [1, 3, 4])
def test_failing_on_target_gives_its_exit_code_and_tail(built, server, known_hosts, tmp_path, code):
    package = make_package(built, tmp_path / "package", standin={"lines": 40, "exit": code})
    result = run_deploy(package, _run_args(server, known_hosts, tmp_path / "board" / "pkg"))
    assert result.returncode == code, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: on_target.py failed") and f"exit code {code}" in error
    assert "last 20 lines of on_target.py output" in result.stderr and "| stand-in line 39" in result.stderr
    assert not (package / "y_hw.npy").exists() and not (package / "y_hw.json").exists()


def test_results_of_another_build_are_refused(built, server, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"build_id": BUILD_B})
    (package / "y_hw.json").write_text('{"build_id": "kept as it was"}')
    result = run_deploy(package, _run_args(server, known_hosts, tmp_path / "board" / "pkg"))
    assert result.returncode == ExitCode.CHECK_FAILED
    assert BUILD_B in result.stderr and BUILD_A in result.stderr
    assert (package / "y_hw.json").read_text() == '{"build_id": "kept as it was"}'
    assert not (package / "y_hw.npy").exists()


def test_run_is_stopped_at_the_timeout(built, server, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package", standin={"sleep": 120})
    result = run_deploy(package, [*_run_args(server, known_hosts, tmp_path / "board" / "pkg"), "--timeout", "3"],
                        timeout=60)
    assert result.returncode == ExitCode.SSH_UNREACHABLE, result.stderr
    assert "did not finish within 3 s" in result.stderr
    pid = int((tmp_path / "board" / "pkg" / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # the board side was stopped too, not just our wait
        os.kill(pid, 0)


@pytest.mark.parametrize("python, missing", [("/nonexistent/python3", "not found"),
                                             ("NUMPY_LESS", "lacks numpy")])
def test_remote_python_without_numpy_is_an_environment_error(server, package, known_hosts, tmp_path,
                                                              python, missing):
    if python == "NUMPY_LESS":
        python = shutil.which("python3", path="/usr/bin:/bin") or pytest.skip("no system python3")
        if subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0:
            pytest.skip(f"{python} has numpy")
    remote = tmp_path / "board" / "pkg"
    args = _run_args(server, known_hosts, remote)
    args[args.index("--remote-python") + 1] = python
    result = run_deploy(package, args)
    assert result.returncode == ExitCode.REMOTE_ENVIRONMENT, result.stderr
    assert missing in result.stderr
    assert not remote.exists()  # checked before anything was copied


def test_board_run_needs_pynq(built, server, known_hosts, tmp_path):
    package = make_package(built, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    (package / "hls4ml_nn.bit").write_bytes(b"not a real bitstream")
    manifest["files"]["hls4ml_nn.bit"] = sha256_file(package / "hls4ml_nn.bit")
    (package / "manifest.json").write_text(json.dumps(manifest))
    result = run_deploy(package, [*base_args(server, known_hosts, tmp_path / "board" / "pkg"), "--run"])
    assert result.returncode == ExitCode.REMOTE_ENVIRONMENT, result.stderr
    assert "pynq" in result.stderr.splitlines()[-1]


def test_board_run_without_bitstream_is_a_usage_error(package, tmp_path):
    result = run_deploy(package, ["--host", "127.0.0.1", "--port", "1", "--run",
                                  "--known-hosts", str(tmp_path / "kh")])
    assert result.returncode == ExitCode.USAGE and "--emulate" in result.stderr


def test_buildmodel_deploys_runs_fetches_and_validates(built, server, known_hosts, tmp_path):
    """The whole path of a user without a board: the real package and the repository's
    on_target.py, deployed by ``BuildModel.py --from deploy``, run in emulation on the loopback
    host, fetched, then checked by utilities/validate_model.py."""
    root = tmp_path / "workstation"
    shutil.copytree(built.root, root)
    package = root / "package"
    remote = tmp_path / "board" / NASTY_NAME
    result = run_buildmodel("--from", "deploy", *_run_args(server, known_hosts, remote), cwd=root)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "[emulation]" in result.stdout + result.stderr  # the board's output, streamed back
    record = json.loads((package / "y_hw.json").read_text())
    assert record["build_id"] == built.manifest["build_id"] and record["mode"] == "emulation"
    np.testing.assert_array_equal(np.load(package / "y_hw.npy"), np.load(package / "y_hls.npy"))
    assert remote_state(remote)["y_hw.npy"] == sha256_file(package / "y_hw.npy")
    report = subprocess.run([sys.executable, str(REPO / "utilities" / "validate_model.py"), str(package), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr
    verdict = json.loads(report.stdout)
    assert verdict["exit_code"] == 0


# --- options --------------------------------------------------------------------------------------

def test_arguments_share_an_existing_emulate_option():
    parser = argparse.ArgumentParser()
    parser.add_argument("--emulate", action="store_true")
    deploy_module.add_deploy_arguments(parser)
    options = parser.parse_args(["--host", "h", "--emulate"])
    assert options.emulate and options.user == "xilinx" and options.port == 22
    assert options.remote_dir == "/home/xilinx/jupyter_notebooks/iris_on_fpga"
    with pytest.raises(SystemExit):
        parser.parse_args(["--password", "x"])  # no way to put a password on the command line


# --- a login that is not root: sudo with the password on stdin -------------------------------------

@pytest.fixture
def sudo_user(tmp_path):
    """A throwaway non-root user whose sudo asks for a password (only where sudo is installed)."""
    if os.geteuid() != 0 or not shutil.which("sudo") or not shutil.which("useradd"):
        pytest.skip("the sudo path needs root, sudo and useradd on this machine (CI has no sudo)")
    import secrets

    name, password = f"irisfpga{secrets.token_hex(3)}", f"pw {secrets.token_hex(8)}"
    sudoers = Path("/etc/sudoers.d") / name
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
        sudoers.chmod(0o440)
        yield name, password
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)


def test_run_through_sudo_with_password_on_stdin(built, sudo_user, tmp_path):
    import tempfile

    name, password = sudo_user
    shared = Path(tempfile.mkdtemp(prefix="iris-fpga-sudo-"))  # outside pytest's 0700 folders
    try:
        shared.chmod(0o755)
        srv = SshServer(shared / "sshd").start()
        try:
            (shared / "sshd").chmod(0o755)
            srv.authorized_keys.chmod(0o644)  # sshd reads it as the login user
            srv.user = name
            board = shared / "board"
            board.mkdir()
            shutil.chown(board, name)
            known_hosts = srv.write_known_hosts(tmp_path / "known_hosts")
            package = make_package(built, tmp_path / "package", standin={"lines": 2})
            args = _run_args(srv, known_hosts, board / "iris; sudo")
            env = _env()
            wrong = subprocess.run([sys.executable, "-m", "iris_fpga.deploy", str(package), *args],
                                   env={**env, "IRIS_FPGA_SSH_PASSWORD": "not it"}, stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=120)
            assert wrong.returncode == ExitCode.SSH_AUTH and "sudo" in wrong.stderr
            result = subprocess.run([sys.executable, "-m", "iris_fpga.deploy", str(package), *args],
                                    env={**env, "IRIS_FPGA_SSH_PASSWORD": password}, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            assert password not in result.stdout + result.stderr
            assert json.loads((package / "y_hw.json").read_text())["build_id"] == BUILD_A
            results = [board / "iris; sudo" / f for f in ("y_hw.npy", "y_hw.json")]
            assert {p.owner() for p in results} == {name}  # given back by deploy, not left to root
        finally:
            srv.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
