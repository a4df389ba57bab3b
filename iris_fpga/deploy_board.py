"""deploy's hands on the board: runs there as the login user, sent as ``python -c`` by deploy.py.

Standard library only, Python 3.6 syntax (PYNQ images ship 3.6-3.10). Each operation prints one
JSON line. It reports and carries out; what counts as a folder of this tool is decided by deploy
on the workstation with ``iris_fpga.contract``'s rules. It touches only: the lock file it makes,
upload folders marked with MARK, and (in ``swap``) the one folder deploy judged ours.
"""
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time

MARK = ".iris-fpga-upload"  # inside an upload folder of this tool until it is checked
SIGN = b"iris-fpga deploy lock\n"  # what a lock file of this tool holds


def kind(mode):
    return ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode)
            else "link" if stat.S_ISLNK(mode) else "other")


def marked(folder):
    """A real folder holding MARK: an upload folder of this tool."""
    mark = os.path.join(folder, MARK)
    return (not os.path.islink(folder) and os.path.isdir(folder) and os.path.lexists(mark)
            and stat.S_ISREG(os.lstat(mark).st_mode))


def inspect(target, limit, extra_dirs, manifest, max_bytes):
    """What is at ``target``: its kind, identity, entries (as contract.list_folder) and manifest."""
    out = {"home": os.path.realpath(os.path.expanduser("~")), "real": os.path.realpath(target)}
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        out["kind"] = "absent"
        return out
    out.update(kind=kind(st.st_mode), id="%d:%d" % (st.st_dev, st.st_ino), entries=[])
    if out["kind"] != "dir":
        return out
    entries, limit = out["entries"], int(limit)

    def unreadable(err):
        entries.append([os.path.relpath(err.filename, target) + " (unreadable)", "other"])
    for root, dirs, files in os.walk(target, onerror=unreadable):
        rel = os.path.relpath(root, target)
        for name in dirs + files:
            entries.append([os.path.normpath(os.path.join(rel, name)), kind(os.lstat(os.path.join(root, name)).st_mode)])
            if len(entries) >= limit:
                entries.append(["(more than %d entries)" % limit, "other"])
                return out
        if rel == ".":
            dirs[:] = [d for d in dirs if d not in json.loads(extra_dirs)]
    if [manifest, "file"] in entries and os.path.getsize(os.path.join(target, manifest)) <= int(max_bytes):
        with open(os.path.join(target, manifest), "rb") as f:
            out["manifest"] = f.read().decode("latin-1")
    return out


def hold(target, wait):
    """Take the folder's lock (waiting up to ``wait`` s), say so, keep it until stdin ends."""
    parent = os.path.dirname(target)
    lock = os.path.join(parent, "." + os.path.basename(target) + ".lock")
    if not os.path.isdir(parent):
        os.makedirs(parent)
    deadline = time.time() + float(wait)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EISDIR):
                raise
            return {"in_the_way": lock}
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.read(fd, 64) not in (b"", SIGN):
            os.close(fd)
            return {"in_the_way": lock}
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.time() > deadline:
                return {"busy": lock}
            time.sleep(0.2)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it after we opened it: take the new one
    os.lseek(fd, 0, 0)
    os.write(fd, SIGN)
    print(json.dumps({"locked": lock}))
    sys.stdout.flush()
    sys.stdin.read()
    os.unlink(lock)
    os.close(fd)
    return None


def begin(parent, name, token):
    """Remove our own marked uploads left by broken deploys; make a marked upload folder."""
    ours = re.compile(re.escape("." + name + ".upload-") + "[0-9a-f]{8}$")
    removed = []
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if ours.match(entry) and marked(path):
            shutil.rmtree(path)
            removed.append(entry)
    upload = os.path.join(parent, "." + name + ".upload-" + token)
    os.mkdir(upload, 0o755)
    open(os.path.join(upload, MARK), "x").close()
    free = os.statvfs(parent)
    return {"free": free.f_bavail * free.f_frsize, "removed": removed}


def swap(target, upload, old, identity):
    """Check the upload's sha256 sums (stdin), then put it in place of ``target`` if that is still
    the folder that was judged (``identity``: dev:ino, or "absent"), and remove that folder."""
    bad = []
    for line in sys.stdin:
        digest, name = line.rstrip("\n").split("  ", 1)
        path = os.path.join(upload, name)
        if not os.path.lexists(path) or not stat.S_ISREG(os.lstat(path).st_mode):
            bad.append(name + " missing")
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            bad.append(name + " differs")
    if bad:
        return {"bad": bad}
    try:
        st = os.lstat(target)
        now = "%d:%d" % (st.st_dev, st.st_ino)
    except FileNotFoundError:
        now = "absent"
    if now != identity or os.path.lexists(old):
        return {"changed": True}
    os.unlink(os.path.join(upload, MARK))
    if now != "absent":
        os.rename(target, old)
    try:
        os.rename(upload, target)
    except OSError:
        if now != "absent":
            os.rename(old, target)
        raise
    if now != "absent":
        try:
            shutil.rmtree(old)
        except OSError as exc:
            return {"left": "%s: %s" % (exc.filename, exc.strerror)}
    return {"swapped": True}


def discard(upload):
    if marked(upload):
        shutil.rmtree(upload)
    return {}



def main(op, *args):
    try:
        answer = {"inspect": inspect, "hold": hold, "begin": begin, "swap": swap, "discard": discard}[op](*args)
    except OSError as exc:
        answer = {"error": "%s: %s" % (exc.filename or op, exc.strerror)}
    if answer is not None:
        print(json.dumps(answer))


if __name__ == "__main__":
    main(*sys.argv[1:])
