"""SSH connection to the board: host-key checks, authentication, and remote commands.

Everything that can go wrong while reaching the board is turned into a ``ToolError`` with the
exit code from the shared table (5 unreachable/timed out, 6 authentication, 7 host key).
Remote commands are always strings built with ``shlex.quote`` by the caller; this module never
builds a shell string from user input itself.
"""
from __future__ import annotations

import codecs
import collections
import getpass
import logging
import os
import select
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import paramiko

from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable

log = logging.getLogger(__name__)

#: Environment variable that may hold the SSH (and sudo) password. Never accepted on argv.
PASSWORD_ENV = "IRIS_FPGA_SSH_PASSWORD"


@dataclass
class CommandResult:
    status: int  # remote exit status, -1 when the server sent none
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint, comparable to ``ssh-keygen -lf``."""
    return key.fingerprint


def known_hosts_name(host: str, port: int) -> str:
    """The host name as OpenSSH writes it in known_hosts (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Like paramiko's RejectPolicy, but keeps the key so the message can show its fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname, key)


class _TrustOnceAndRecord(paramiko.MissingHostKeyPolicy):
    """--trust-new-host: accept an *unknown* key and append it to the known_hosts file.

    Only reached for hosts absent from known_hosts; a changed key still raises
    BadHostKeyException inside paramiko before any policy is asked.
    """

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        path = self.known_hosts
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        with open(path, "a", encoding="ascii") as fh:
            if needs_newline:
                fh.write("\n")
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("trusted new host key for %s (%s %s) and recorded it in %s",
                    hostname, key.get_name(), fingerprint(key), path)


def _password_from_env() -> str | None:
    value = os.environ.get(PASSWORD_ENV)
    return value if value else None


def _prompt_password(user: str, host: str) -> str | None:
    """Ask on the terminal, never anywhere else; None when there is no terminal."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    try:
        return getpass.getpass(f"password for {user}@{host}: ") or None
    except (EOFError, KeyboardInterrupt):
        return None


class Connection:
    """An authenticated SSH connection with a verified host key."""

    def __init__(self, client: paramiko.SSHClient, host: str, user: str, port: int,
                 timeout: float, password: str | None):
        self.client = client
        self.host = host
        self.user = user
        self.port = port
        self.timeout = timeout
        self._password = password  # kept only for sudo; never logged

    @property
    def transport(self) -> paramiko.Transport:
        return self.client.get_transport()

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def sudo_password(self) -> str | None:
        """The password for ``sudo -S``: from the login, the environment, or a terminal prompt."""
        if self._password is None:
            self._password = _password_from_env() or _prompt_password(self.user, self.host)
        return self._password

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open_sftp(self) -> paramiko.SFTPClient:
        """An SFTP session (the board's ``sftp-server``) whose every read waits at most ``timeout``."""
        transport = self.transport
        if transport is None or not transport.is_active():
            raise ToolError(f"the SSH connection to {self.target} was lost", ExitCode.SSH_UNREACHABLE)
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if not transport.is_active():
                raise ToolError(f"the SSH connection to {self.target} was lost", ExitCode.SSH_UNREACHABLE) from exc
            raise ToolError(f"{self.target} offers no working SFTP ({printable(exc) or type(exc).__name__}): "
                            f"deploy fetches results with it (OpenSSH's sftp-server)",
                            ExitCode.REMOTE_ENVIRONMENT) from exc
        sftp.get_channel().settimeout(self.timeout)
        return sftp

    def start(self, command: str, *, timeout: float | None = None) -> paramiko.Channel:
        """Start ``command`` (an already quoted shell string) on a new channel and return it open."""
        transport = self.transport
        if transport is None or not transport.is_active():
            raise ToolError(f"the SSH connection to {self.target} was lost", ExitCode.SSH_UNREACHABLE)
        try:
            channel = transport.open_session(timeout=self.timeout if timeout is None else timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ToolError(f"the SSH connection to {self.target} failed: {exc}",
                            ExitCode.SSH_UNREACHABLE) from exc
        return channel

    def run(self, command: str, *, timeout: float | None = None, stdin: bytes | None = None,
            stream_to: tuple[TextIO, TextIO] | None = None, tail_bytes: int = 8192) -> CommandResult:
        """Run ``command`` (an already quoted shell string) and wait for it.

        Output is read as it arrives (reading before ``recv_exit_status`` avoids paramiko's
        deadlock on large output); with ``stream_to`` it is also written to those two streams
        at once. Only the last ``tail_bytes`` of each stream are kept when streaming.
        """
        timeout = self.timeout if timeout is None else timeout
        channel = self.start(command, timeout=timeout)
        transport = self.transport
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise ToolError(f"the SSH connection to {self.target} failed: {exc}",
                            ExitCode.SSH_UNREACHABLE) from exc

        out = _Collector(stream_to[0] if stream_to else None, tail_bytes if stream_to else None)
        err = _Collector(stream_to[1] if stream_to else None, tail_bytes if stream_to else None)
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            while True:
                while channel.recv_ready():
                    out.add(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(65536))
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if channel.closed or not transport.is_active():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                select.select([channel], [], [], min(remaining, 0.5))
            status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ToolError(f"the SSH connection to {self.target} failed while running a command: {exc}",
                            ExitCode.SSH_UNREACHABLE) from exc
        finally:
            channel.close()
        if status == -1 and not timed_out and not transport.is_active():
            raise ToolError(f"the SSH connection to {self.target} was lost while running a command",
                            ExitCode.SSH_UNREACHABLE)
        return CommandResult(status, out.text(), err.text(), timed_out)


class _Collector:
    """Decodes a byte stream incrementally, optionally echoing it and keeping only a tail.

    The echo is escaped with ``printable`` line by line (newlines kept): what a board prints can
    neither move the cursor, clear the screen nor recolour a line of its own.
    """

    def __init__(self, echo: TextIO | None, keep: int | None):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._echo = echo
        self._keep = keep
        self._chunks: collections.deque[str] = collections.deque()
        self._size = 0

    def add(self, data: bytes) -> None:
        if not data:
            return
        text = self._decoder.decode(data)
        if self._echo is not None:
            self._echo.write("\n".join(map(printable, text.split("\n"))))
            self._echo.flush()
        self._chunks.append(text)
        self._size += len(text)
        while self._keep is not None and self._size - len(self._chunks[0]) > self._keep:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        return "".join(self._chunks) + self._decoder.decode(b"", final=True)


def connect(host: str, *, user: str, port: int = 22, key: Path | None = None,
            known_hosts: Path, trust_new_host: bool = False, timeout: float = 30.0) -> Connection:
    """Open an SSH connection, verifying the host key against ``known_hosts``.

    Authentication: ``key`` (or, without it, the usual ~/.ssh keys) and the ssh-agent; then a
    password from $IRIS_FPGA_SSH_PASSWORD or a terminal prompt. Never from argv.
    """
    _quiet_paramiko()
    pkey = None if key is None else load_key(Path(key))
    known_hosts = Path(known_hosts).expanduser()
    password = _password_from_env()
    try:
        return _connect_once(host, user, port, pkey, known_hosts, trust_new_host, timeout, password)
    except paramiko.AuthenticationException:
        if password is not None:
            raise ToolError(f"SSH authentication failed for {user}@{host}:{port} "
                            f"(key, agent and ${PASSWORD_ENV} were refused)", ExitCode.SSH_AUTH) from None
        password = _prompt_password(user, host)
        if password is None:
            raise ToolError(f"SSH authentication failed for {user}@{host}:{port}: no key or agent identity "
                            f"was accepted (give --key, load the key into ssh-agent, or set ${PASSWORD_ENV})",
                            ExitCode.SSH_AUTH) from None
    try:
        return _connect_once(host, user, port, pkey, known_hosts, trust_new_host, timeout, password)
    except paramiko.AuthenticationException:
        raise ToolError(f"SSH authentication failed for {user}@{host}:{port} (password refused)",
                        ExitCode.SSH_AUTH) from None


def load_key(path: Path) -> paramiko.PKey:
    """The private key in ``path``; a file that is none is an input error (2), not "cannot reach"."""
    if not path.is_file():
        raise ToolError(f"--key {path}: no such file", ExitCode.USAGE)
    reasons = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key_file(str(path))
        except paramiko.PasswordRequiredException:
            raise ToolError(f"the key {path} is encrypted: load it into ssh-agent (ssh-add) and retry",
                            ExitCode.SSH_AUTH) from None
        except OSError as exc:
            raise ToolError(f"--key {path}: {exc.strerror}", ExitCode.USAGE) from None
        except (paramiko.SSHException, ValueError) as exc:
            reasons.append(str(exc))
    raise ToolError(f"--key {path} is not an Ed25519, ECDSA or RSA private key ({reasons[0]})", ExitCode.USAGE)


def load_known_hosts(client: paramiko.SSHClient, path: Path) -> None:
    """Read ``path`` into ``client``'s host keys. Like OpenSSH, skip lines that are not valid
    entries (truncated, garbage) with a warning; a changed key is still caught by paramiko."""
    if not path.exists():
        return
    if not path.is_file():
        raise ToolError(f"--known-hosts {path} is not a file", ExitCode.USAGE)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ToolError(f"cannot read known_hosts file {path}: {exc.strerror}", ExitCode.USAGE) from None
    keys, skipped = client.get_host_keys(), []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except Exception:  # noqa: BLE001 - paramiko's key parsers raise many kinds; OpenSSH skips such lines
            entry = None
        if entry is None:
            skipped.append(number)
            continue
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    if skipped:
        log.warning("%s: skipped line%s %s (not a host key entry OpenSSH or paramiko can read)", path,
                    "s" if len(skipped) > 1 else "", ", ".join(map(str, skipped[:10])))


def _connect_once(host, user, port, pkey, known_hosts: Path, trust_new_host, timeout, password) -> Connection:
    client = paramiko.SSHClient()
    load_known_hosts(client, known_hosts)
    client.set_missing_host_key_policy(
        _TrustOnceAndRecord(known_hosts) if trust_new_host else _RefuseUnknown())
    where = f"{user}@{host}:{port}"
    try:
        client.connect(
            host, port=port, username=user, password=password,
            pkey=pkey, look_for_keys=pkey is None, allow_agent=True,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
    except _UnknownHostKey as exc:
        client.close()
        raise ToolError(
            f"host key of {exc.hostname} is not in {known_hosts}: {exc.key.get_name()} {fingerprint(exc.key)}; "
            f"compare it with the board's (ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_stem(exc.key)}_key.pub "
            f"on its console), then re-run with --trust-new-host to trust it once and record it",
            ExitCode.SSH_HOST_KEY) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise ToolError(
            f"HOST KEY CHANGED for {known_hosts_name(host, port)}: it now offers {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, {known_hosts} expects {exc.expected_key.get_name()} "
            f"{fingerprint(exc.expected_key)}. Refused (this may be an attack). If the board was "
            f"reinstalled, remove the old entry with: ssh-keygen -R '{known_hosts_name(host, port)}' "
            f"-f {known_hosts}", ExitCode.SSH_HOST_KEY) from None
    except paramiko.PasswordRequiredException:  # one of the usual ~/.ssh keys
        client.close()
        raise ToolError("a key in ~/.ssh is encrypted: load it into ssh-agent (ssh-add) or give --key",
                        ExitCode.SSH_AUTH) from None
    except paramiko.AuthenticationException:
        client.close()
        raise
    except (socket.timeout, TimeoutError) as exc:
        client.close()
        raise ToolError(f"cannot reach {where}: timed out after {timeout:g} s", ExitCode.SSH_UNREACHABLE) from exc
    except socket.gaierror as exc:
        client.close()
        raise ToolError(f"cannot resolve host {host!r}: {exc.strerror}", ExitCode.SSH_UNREACHABLE) from exc
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        client.close()
        reasons = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
        raise ToolError(f"cannot reach {where}: {reasons}", ExitCode.SSH_UNREACHABLE) from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise ToolError(f"cannot reach {where}: {exc}", ExitCode.SSH_UNREACHABLE) from exc
    transport = client.get_transport()
    transport.set_keepalive(max(1, int(min(timeout, 15))))
    log.info("connected to %s (host key %s)", where, fingerprint(transport.get_remote_server_key()))
    return Connection(client, host, user, port, timeout, password)


def _quiet_paramiko() -> None:
    """paramiko logs tracebacks for failures this module reports as one line; keep them out."""
    logger = logging.getLogger("paramiko")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.CRITICAL)


def _key_file_stem(key: paramiko.PKey) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"
