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


class Changed(Exception):
    """The folder being replaced changed under the swap: it goes back as it was."""


def swap(target, upload, old, identity):
    """Check the upload's sha256 sums, then put it in place of ``target`` if that is still the folder
    that was judged (``identity``: dev:ino, or "absent"), carrying over what a user or a run made.

    stdin is the plan (JSON, from deploy): ``sums``, the ``judged`` entries, the contract's names
    and the two build ids. The old folder is renamed aside, listed, its carried entries copied
    into the upload, and listed again: any difference (a file written meanwhile) puts it back
    untouched. Afterwards only the listed files are unlinked and the emptied folders removed; a
    folder in which something appeared since is kept, and named in the answer.
    """
    plan = json.loads(sys.stdin.read())
    bad = check_sums(upload, plan["sums"])
    if bad:
        return {"bad": bad}
    try:
        st = os.lstat(target)
        now = "%d:%d" % (st.st_dev, st.st_ino)
    except FileNotFoundError:
        now = "absent"
    if now != identity or os.path.lexists(old):
        return {"changed": "it is not the folder that was checked"}
    carried, listed = [], {}
    if now != "absent":
        os.rename(target, old)
    try:
        if now != "absent":
            listed = listing(old)
            stranger = unexpected(listed, plan)
            if stranger:
                raise Changed(stranger + " appeared")
            carried = carry(old, upload, plan)
            pause(plan, "board-copied")
            difference = differs(listed, listing(old))
            if difference:
                raise Changed(difference)
        os.unlink(os.path.join(upload, MARK))
        os.rename(upload, target)
    except BaseException as exc:
        if os.path.isdir(upload) and not os.path.lexists(os.path.join(upload, MARK)):
            open(os.path.join(upload, MARK), "x").close()  # so that deploy's discard removes it
        if now != "absent":
            os.rename(old, target)
        if isinstance(exc, Changed):
            return {"changed": str(exc)}
        raise
    answer = {"swapped": True, "carried": carried}
    if now != "absent":
        pause(plan, "board-removing")
        left = remove_listed(old, listed)
        if left:
            answer["left"] = left
    return answer


def check_sums(upload, sums):
    bad = []
    for name, digest in sorted(sums.items()):
        path = os.path.join(upload, name)
        if not os.path.lexists(path) or not stat.S_ISREG(os.lstat(path).st_mode):
            bad.append(name + " missing")
            continue
        if sha256(path) != digest:
            bad.append(name + " differs")
    return bad


def listing(folder):
    """Every entry below ``folder``, links not followed: relative path -> (kind, inode, size, mtime)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            k = kind(st.st_mode)
            out[os.path.relpath(path, folder)] = [k, st.st_ino] + ([] if k == "dir" else [st.st_size, st.st_mtime_ns])
    return out


def differs(before, after):
    """The first entry added, removed or changed between two listings, or None."""
    for rel in sorted(set(before) | set(after)):
        if before.get(rel) != after.get(rel):
            return rel + (" appeared" if rel not in before else " went away" if rel not in after else " changed")
    return None


def unexpected(listed, plan):
    """An entry that was not judged and is not a result or notebook (carried over), or None."""
    judged = {rel: k for rel, k in plan["judged"]}
    for rel, info in sorted(listed.items()):
        top = rel.split(os.sep)[0]
        if top in plan["extra_dirs"] and rel != top:
            continue
        if judged.get(rel) != info[0] and not (rel in plan["results"] + [plan["notebook"]] and info[0] == "file"):
            return rel
    return None


def carry(old, upload, plan):
    """Copy into the upload what the old package holds that a user or a run made; return where to."""
    carried = []
    for name in plan["keep_dirs"]:
        if is_real_dir(os.path.join(old, name)):
            shutil.copytree(os.path.join(old, name), os.path.join(upload, name), ignore=not_regular)
            carried.append(name + "/")
    aside = []  # previous/<old build id>/, chosen on first use

    def place(name):
        if not aside:
            base = os.path.join(plan["previous"], plan["old_id"])
            n, rel = 1, base
            while os.path.lexists(os.path.join(upload, rel)):
                n += 1
                rel = "%s-%d" % (base, n)
            os.makedirs(os.path.join(upload, rel))
            aside.append(rel)
        return os.path.join(aside[0], name)
    for name in plan["results"]:
        if is_regular(os.path.join(old, name)):
            dest = name if plan["old_id"] == plan["new_id"] else place(name)
            shutil.copy2(os.path.join(old, name), os.path.join(upload, dest))
            carried.append(dest)
    notebook = os.path.join(old, plan["notebook"])
    if is_regular(notebook) and sha256(notebook) != plan["notebook_sha"]:
        dest = place(plan["notebook"])
        shutil.copy2(notebook, os.path.join(upload, dest))
        carried.append(dest)
    return carried


def remove_listed(folder, listed):
    """Unlink the listed files, then remove the emptied folders, deepest first; never anything
    else. Returns what kept ``folder`` (something that appeared in it), or None."""
    kept = None
    for rel in sorted(listed, key=lambda r: -r.count(os.sep)):
        path = os.path.join(folder, rel)
        try:
            if listed[rel][0] == "dir":
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            kept = kept or "%s: %s" % (rel, exc.strerror)
    try:
        os.rmdir(folder)
    except OSError as exc:
        return kept or "%s: %s" % (folder, exc.strerror)
    return None


def pause(plan, point):
    """Test-only pause point (deploy forwards $IRIS_FPGA_TEST_PAUSE): make the file, wait until it goes."""
    spec = plan.get("pause")
    if not spec or spec["point"] != point:
        return
    open(spec["file"], "x").close()
    deadline = time.time() + 60
    while os.path.lexists(spec["file"]) and time.time() < deadline:
        time.sleep(0.05)


def is_regular(path):
    return os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode)


def is_real_dir(path):
    return os.path.lexists(path) and stat.S_ISDIR(os.lstat(path).st_mode)


def not_regular(folder, names):
    """copytree's ``ignore``: links, FIFOs and devices are not carried over."""
    return [n for n in names if not (is_regular(os.path.join(folder, n)) or is_real_dir(os.path.join(folder, n)))]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discard(upload):
    if marked(upload):
        shutil.rmtree(upload)
    return {}



def main(op, *args):
    try:
        answer = {"inspect": inspect, "hold": hold, "begin": begin, "swap": swap, "discard": discard}[op](*args)
    except OSError as exc:  # shutil.Error too: it lists every file it could not copy
        answer = {"error": ("%s: %s" % (exc.filename or op, exc.strerror or exc))[:500]}
    if answer is not None:
        print(json.dumps(answer))


if __name__ == "__main__":
    main(*sys.argv[1:])
