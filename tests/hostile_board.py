"""A hostile board for the deploy tests: the test sshd's ForceCommand, run for every request.

Standard library only. It reads ``~/scenario.json`` (written by the test) and logs every request to
``~/requests.log``. Then, by what the workstation asked for:

- the SFTP subsystem: with ``files``, once on_target.py has run, first turns the named results in
  ``dir`` into links, FIFOs, folders or huge sparse files, then serves them with OpenSSH's own
  sftp-server; with ``sftp``,
  answers as a lying SFTP server instead (see ``Sftp``);
- ``scp -f`` (a download): the raw scp records of ``scp_f`` (hex), whatever file was asked for;
- ``scp -t`` (an upload): the raw answer of ``scp_t`` (hex);
- deploy's board helper (``python -c SCRIPT OP ...``): the answer ``answers[OP]``, when given;
- anything else: runs the command, as a board would.
"""
import json
import os
import shlex
import stat
import struct
import sys
import time

SFTP_SERVER = "/usr/lib/openssh/sftp-server"
HOME = os.path.expanduser("~")


def main():
    with open(os.path.join(HOME, "scenario.json")) as f:
        scenario = json.load(f)
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    with open(os.path.join(HOME, "requests.log"), "a") as log:
        log.write(command[:200].replace("\n", " ") + "\n")
    words = command.split()[:3] if command.startswith("scp ") else []
    if command.split()[:1] == [SFTP_SERVER]:
        ran = os.path.isfile(os.path.join(scenario["dir"], "y_hw.json"))  # a fetch, not the upload
        for name, kind in scenario.get("files", {}).items() if ran else ():
            plant(os.path.join(scenario["dir"], name), kind)
        if "sftp" in scenario:
            Sftp(scenario["sftp"]).serve()
            return
        os.execv(SFTP_SERVER, [SFTP_SERVER])
    if "-f" in words and "scp_f" in scenario:
        sys.stdin.buffer.read(1)  # scp's first "ready" byte
        send(bytes.fromhex(scenario["scp_f"]))
        time.sleep(0.5)
        return
    if "-t" in words and "scp_t" in scenario:
        send(bytes.fromhex(scenario["scp_t"]))
        return
    helper = shlex.split(command)[3:4] if command.split()[1:2] == ["-c"] else []
    if helper and helper[0] in scenario.get("answers", {}):
        send((json.dumps(scenario["answers"][helper[0]]) + "\n").encode())
        return
    os.execv("/bin/sh", ["sh", "-c", command])


def send(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def plant(path, kind):
    """Put ``kind`` at ``path``: link:TARGET, fifo, dir, sparse:SIZE or hex:BYTES."""
    if os.path.lexists(path):
        os.unlink(path)
    what, _, arg = kind.partition(":")
    if what == "link":
        os.symlink(arg, path)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "dir":
        os.mkdir(path)
        with open(os.path.join(path, "PWNED_BY_BOARD"), "w") as f:
            f.write("a file inside a folder named like a result")
    elif what == "sparse":
        with open(path, "wb") as f:
            f.truncate(int(arg))
    else:
        with open(path, "wb") as f:
            f.write(bytes.fromhex(arg))


class Sftp:
    """SFTP v3 that serves files honestly, except for the one named ``target``, where it ``lies``:

    size: says 10 bytes, then sends without end; more: answers each read with 4 MiB at once;
    untyped: gives neither type nor size; link: lstat says file, the opened file says link;
    records: the file holds scp records; garbage / truncated: a packet no SFTP server sends;
    short: a data string longer than its packet; silent: never answers a read;
    flood: answers lstat with answers to requests never made, without end;
    refuse upload: answers every write with a failure whose message holds escape codes;
    extended (any target): every file claims 2^32 - 1 extended attributes.
    """

    def __init__(self, scenario):
        self.target, self.lie = scenario["target"], scenario["lie"]
        self.handles = {}
        self.inp, self.out = sys.stdin.buffer, sys.stdout.buffer

    def serve(self):
        while True:
            head = self.inp.read(4)
            if len(head) < 4:
                return
            body = self.inp.read(struct.unpack(">I", head)[0])
            kind, body = body[0], body[1:]
            if kind == 1:  # INIT
                self.packet(2, struct.pack(">I", 3))
                continue
            rid = struct.unpack(">I", body[:4])[0]
            self.request(kind, rid, body[4:])

    def packet(self, kind, payload):
        data = bytes([kind]) + payload
        self.out.write(struct.pack(">I", len(data)) + data)
        self.out.flush()

    def request(self, kind, rid, body):
        handlers = {7: self.lstat, 17: self.lstat, 3: self.open, 8: self.fstat, 5: self.read, 4: self.close,
                    6: self.write, 14: self.mkdir}
        if kind not in handlers:
            return self.status(rid, 8, "unsupported")  # OP_UNSUPPORTED
        handlers[kind](rid, body)

    def lstat(self, rid, body):
        path = string(body)[0].decode()
        hostile = os.path.basename(path) == self.target
        if hostile and self.lie in ("garbage", "truncated", "flood"):
            return self.misbehave(rid)
        if hostile and self.lie in ("size", "untyped", "link"):
            return self.attrs(rid, None if self.lie == "untyped" else stat.S_IFREG | 0o644, 10)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return self.status(rid, 2, "no such file")
        self.attrs(rid, st.st_mode, st.st_size)

    def misbehave(self, rid):
        if self.lie == "garbage":
            self.out.write(b"\xff" * 64)
            self.out.flush()
        elif self.lie == "truncated":
            self.out.write(struct.pack(">IBI", 100, 105, rid) + b"\x00\x00")
            self.out.flush()
            sys.exit(0)  # the record stays cut short (end of file); the connection stays open
        else:
            while True:
                self.attrs(rid + 1000, stat.S_IFREG | 0o644, 10)

    def open(self, rid, body):
        path, rest = string(body)
        path, pflags = path.decode(), struct.unpack(">I", rest[:4])[0]
        flags = (os.O_RDWR if pflags & 3 == 3 else os.O_WRONLY if pflags & 2 else os.O_RDONLY) | os.O_NONBLOCK
        for bit, flag in ((8, os.O_CREAT), (16, os.O_TRUNC), (32, os.O_EXCL)):
            flags |= flag if pflags & bit else 0
        handle = str(len(self.handles)).encode()
        try:
            self.handles[handle] = (path, os.open(path, flags, 0o644))
        except OSError:
            return self.status(rid, 4, "cannot open")
        self.packet(102, struct.pack(">I", rid) + pack_string(handle))

    def fstat(self, rid, body):
        path, fd = self.handles[string(body)[0]]
        if os.path.basename(path) == self.target and self.lie == "link":
            return self.attrs(rid, stat.S_IFLNK | 0o777, 10)
        if os.path.basename(path) == self.target and self.lie in ("size", "untyped"):
            return self.attrs(rid, None if self.lie == "untyped" else stat.S_IFREG | 0o644, 10)
        st = os.fstat(fd)
        self.attrs(rid, st.st_mode, st.st_size)

    def read(self, rid, body):
        handle, rest = string(body)
        offset, length = struct.unpack(">QI", rest[:12])
        path, fd = self.handles[handle]
        if os.path.basename(path) == self.target and self.lie != "link":
            return self.lying_read(rid, offset, length)
        data = os.pread(fd, length, offset)
        if not data:
            return self.status(rid, 1, "eof")
        self.packet(103, struct.pack(">I", rid) + pack_string(data))

    def lying_read(self, rid, offset, length):
        if self.lie == "silent":
            time.sleep(60)  # past any --timeout of the tests; then this process ends by itself
        if offset and self.lie in ("short", "records"):
            return self.status(rid, 1, "eof")
        if self.lie == "short":
            return self.packet(103, struct.pack(">II", rid, 5000) + b"\x93NUMPY")
        data = {"size": b"A" * length, "more": b"A" * (4 << 20),
                "records": b"D0755 0 y_hw.npy\nD0755 0 ..\nD0755 0 ..\nC0644 14 PWNED_BY_BOARD\n"}[self.lie]
        self.packet(103, struct.pack(">I", rid) + pack_string(data))

    def write(self, rid, body):
        handle, rest = string(body)
        offset, (data, _) = struct.unpack(">Q", rest[:8])[0], string(rest[8:])
        if self.lie == "refuse upload":
            return self.status(rid, 4, "\x1b[2J\x1b[1;32mPASS\x1b[0m\nforged line")
        os.pwrite(self.handles[handle][1], data, offset)
        self.status(rid, 0, "ok")

    def mkdir(self, rid, body):
        os.mkdir(string(body)[0].decode(), 0o755)
        self.status(rid, 0, "ok")

    def close(self, rid, body):
        path, fd = self.handles.pop(string(body)[0])
        os.close(fd)
        self.status(rid, 0, "ok")

    def attrs(self, rid, mode, size):
        if mode is None:
            return self.packet(105, struct.pack(">II", rid, 0))
        if self.lie == "extended":  # claims 2^32 - 1 extended attributes, and sends none
            return self.packet(105, struct.pack(">IIQII", rid, 1 | 4 | 0x80000000, size, mode, 0xFFFFFFFF))
        self.packet(105, struct.pack(">IIQI", rid, 1 | 4, size, mode))

    def status(self, rid, code, message):
        self.packet(101, struct.pack(">II", rid, code) + pack_string(message.encode()) + pack_string(b""))


def string(data):
    n = struct.unpack(">I", data[:4])[0]
    return data[4:4 + n], data[4 + n:]


def pack_string(data):
    return struct.pack(">I", len(data)) + data


if __name__ == "__main__":
    main()
