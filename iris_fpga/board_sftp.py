"""File transfers with the board over SFTP, where the workstation names every path and the board
answers with data and status codes only (deploy's upload and its fetch of the results).

A board is untrusted here: with scp, whoever answers a download names the local paths (folder
records, ``..``); with SFTP the board is asked for one path and gives bytes, bounded in size and
time, or one of the refusals below.
"""
from __future__ import annotations

import os
import posixpath
import stat
import threading
from pathlib import Path

import paramiko
from paramiko import sftp

from iris_fpga import ssh
from iris_fpga.errors import ExitCode, ToolError
from iris_fpga.fileio import printable


class BoardSftp:
    """File transfers with the board over SFTP (OpenSSH's sftp-server): the workstation names every
    path, local and remote; the board answers with data and status codes only.

    Reads are bounded in size and in time: a watchdog closes the session when ``conn.timeout``
    has passed, so a board that trickles data or floods unrelated answers cannot hold a read.
    """

    CHUNK = 1 << 15

    def __init__(self, conn: ssh.Connection):
        self.conn = conn
        self.expired = False

    def __enter__(self) -> "BoardSftp":
        self.client = self.conn.open_sftp()
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    def _expire(self) -> None:
        self.expired = True
        self.client.close()

    def send(self, local: Path, path: str, name: str, progress) -> None:
        """Write the local regular file ``local`` (never through a link) to ``path`` on the board."""
        with open(os.open(local, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            # confirm=False: no stat through paramiko's parser (see _attrs); the board checks sha256 sums
            self.client.putfo(fh, path, size, callback=lambda sent, total: progress(name, size, sent), confirm=False)
        if size == 0:
            progress(name, 0, 0)

    def read(self, path: str, cap: int) -> bytes:
        """The bytes of the regular file ``path`` on the board; ToolError for anything else."""
        name, where = printable(posixpath.basename(path)), self.conn.target
        watchdog = threading.Timer(self.conn.timeout, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            self._check(*self._attrs(sftp.CMD_LSTAT, path), name, cap)
            with self.client.open(path, "rb") as fh:
                # what was opened: a link swapped in since is refused
                self._check(*self._attrs(sftp.CMD_FSTAT, fh.handle), name, cap)
                data = bytearray()
                while chunk := fh.read(min(self.CHUNK, cap + 1 - len(data))):
                    data += chunk
                    if len(data) > cap:
                        raise ToolError(f"{name} on {where} is larger than {cap} bytes (more than it said): "
                                        f"refused", ExitCode.USAGE)
            return bytes(data)
        except FileNotFoundError:
            raise ToolError(f"on_target.py reported success but {where} has no {name}", ExitCode.BOARD) from None
        except PermissionError as exc:
            raise ToolError(f"cannot read {name} on {where} ({printable(exc.strerror)})", ExitCode.BOARD) from None
        except (paramiko.SSHException, paramiko.SFTPError, OSError, EOFError) as exc:
            transport = self.conn.transport
            if isinstance(exc, TimeoutError) or self.expired or not transport or not transport.is_active():
                raise ToolError(f"fetching {name} from {where} broke off or passed --timeout "
                                f"({printable(exc) or type(exc).__name__})", ExitCode.SSH_UNREACHABLE) from None
            raise ToolError(f"the board's SFTP answer for {name} from {where} is not one a file server gives "
                            f"({printable(exc) or type(exc).__name__}): refused", ExitCode.USAGE) from None
        finally:
            watchdog.cancel()

    def _attrs(self, command: int, target) -> tuple[int | None, int | None]:
        """(mode, size) from the board's answer to an lstat or fstat, read here: paramiko's
        SFTPAttributes would loop over as many extended attributes as the answer claims (2^32 of
        them, in the main thread, beyond any timeout). The extended attributes are not read."""
        kind, msg = self.client._request(command, target)  # paramiko's one request primitive
        if kind != sftp.CMD_ATTRS:
            raise paramiko.SFTPError("expected attributes")
        flags = msg.get_int()
        size = msg.get_int64() if flags & paramiko.SFTPAttributes.FLAG_SIZE else None
        if flags & paramiko.SFTPAttributes.FLAG_UIDGID:
            msg.get_int(), msg.get_int()
        mode = msg.get_int() if flags & paramiko.SFTPAttributes.FLAG_PERMISSIONS else None
        return mode, size

    @staticmethod
    def _check(mode: int | None, size: int | None, name: str, cap: int) -> None:
        if mode is None or size is None:
            raise ToolError(f"the board gives no type or size for {name}: refused", ExitCode.USAGE)
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else \
                "not a regular file (a FIFO, socket or device)"
            raise ToolError(f"{name} on the board is {kind}: refused", ExitCode.USAGE)
        if size > cap:
            raise ToolError(f"{name} on the board is {size} bytes, larger than the {cap} such a file of this "
                            f"tool may be: refused", ExitCode.USAGE)
