"""A real OpenSSH server on 127.0.0.1 for the deploy tests, run as an ordinary background process.

It gets its own host key, a client key pair made here, a free port, and its own config, pid and
log files in a folder of the caller's choosing; ``stop()`` ends exactly the process it started.
Without /usr/sbin/sshd the tests skip with the reason, except under CI=true, where they fail.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")  # sshd refuses to start unless run by its absolute path
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PRIVSEP_DIR = Path("/run/sshd")


def require_sshd() -> None:
    """Skip (or, under CI=true, fail) when this machine cannot run a local OpenSSH server."""
    missing = [str(p) for p in (SSHD,) if not p.exists()]
    if shutil.which("ssh-keygen") is None:
        missing.append("ssh-keygen")
    if not missing:
        return
    reason = (f"SSH tests need OpenSSH ({', '.join(missing)} missing): "
              "apt-get install openssh-server (.ci/run does)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def require_throwaway_users() -> None:
    """Skip (or, under CI=true, fail) unless this process may add and remove a throwaway user."""
    missing = [t for t in ("useradd", "userdel", "runuser") if shutil.which(t) is None]
    if os.geteuid() == 0 and not missing:
        return
    reason = ("deploy tests log in as a throwaway non-root user whose home is a scratch folder: "
              + (f"{', '.join(missing)} missing" if missing else "that needs root (useradd)"))
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " -- CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


def make_key(path: Path, comment: str = "iris-fpga-test") -> str:
    """Make an ed25519 key pair at ``path`` / ``path.pub``; return the public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text().strip()


def fingerprint(pub_path: Path) -> str:
    """``SHA256:...`` of a public key file, as ssh-keygen prints it."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub_path)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SshServer:
    host = "127.0.0.1"

    def __init__(self, folder: Path, user: str | None = None, force_command: str | None = None):
        """``force_command``: sshd's ForceCommand, run for every request (the original one is in
        $SSH_ORIGINAL_COMMAND), e.g. a hostile board."""
        self.folder = Path(folder)
        self.force_command = force_command
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = user or getpass.getuser()
        self.host_key = self.folder / "ssh_host_ed25519_key"
        self.host_pub_line = make_key(self.host_key, "iris-fpga-test-host")
        self.client_key = self.folder / "id_ed25519"
        self.client_pub_line = make_key(self.client_key)
        self.authorized_keys = self.folder / "authorized_keys"
        self.authorized_keys.write_text(self.client_pub_line + "\n")
        self.authorized_keys.chmod(0o600)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "sshd.log"

    @property
    def host_fingerprint(self) -> str:
        return fingerprint(self.host_key.with_name(self.host_key.name + ".pub"))

    def known_hosts_line(self) -> str:
        """The line OpenSSH would record for this server (``[127.0.0.1]:PORT type key``)."""
        key_type, key_b64 = self.host_pub_line.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_b64}\n"

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line())
        return path

    def _config(self, port: int) -> Path:
        config = self.folder / "sshd_config"
        lines = [
            f"Port {port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "LogLevel VERBOSE",
        ]
        if SFTP_SERVER.exists():
            lines.append(f"Subsystem sftp {SFTP_SERVER}")
        if self.force_command:
            lines.append(f"ForceCommand {self.force_command}")
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self, attempts: int = 3) -> "SshServer":
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        last = ""
        for _ in range(attempts):
            port = _free_port()
            config = self._config(port)
            self.process = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E", str(self.log)],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
            if self._wait_ready(port):
                self.port = port
                return self
            last = self._stop_process()
        raise RuntimeError(f"sshd did not start: {last.strip()[-2000:]}")

    def _wait_ready(self, port: int, seconds: float = 10.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _stop_process(self) -> str:
        """Stop the one process this object started; return what it said."""
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        err = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return err + log

    def stop(self) -> None:
        self._stop_process()
