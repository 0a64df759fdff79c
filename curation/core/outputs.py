"""Output directories a command owns: it records what it creates, and `--overwrite` removes only that.

Every command that writes an output directory claims it with `claim()`. The directory then holds
`.curate-owned.json`: the command's name and every file and directory it created there, recorded *before* each is
created (so a run killed at any point has recorded everything it left behind). The rules (docs/data-contract.md):

* An output that is an input, contains an input or lies inside an input directory is refused.
* A new or empty directory is claimed. A non-empty directory without the record is refused, with or without
  `--overwrite`: nothing in it was created by this toolkit, so nothing in it may be removed or mixed with.
* A directory claimed by another command is refused (`--overwrite` never crosses commands).
* A directory claimed by the same command is the command's to resume or, with `--overwrite`, to clear: `clear()`
  removes the recorded files, the files its runs made inside the recorded working trees (`made`), then the recorded
  directories (and directories inside the trees) that are left empty. Anything else there is kept: a file the user
  added, next to the outputs or inside a working tree such as `_logs/`.
* Working trees (`_logs/`, `_work/`, `parts/`) fill with files the command does not name before it writes them (a
  third-party library's logs): a locked claim notes what the trees hold when it starts, and `release()` records the
  files that appeared during the run in `made`. A run killed before that leaves `running` (its start) in the record:
  the next locked claim records as made the tree files changed since that start (a killed build's spill, say), and
  nothing older.
* One writer at a time: `claim(..., lock=True)` takes an exclusive `flock` on `.curate-owned.lock` in the directory
  before it reads the record, and a second process claiming the directory is refused, naming the holder. The kernel
  drops the lock when its process ends, however it ends (SIGKILL included): nothing is ever left to remove by hand.
  The command releases it when it is done (`Output.release()`).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from curation.core.errors import CurationError

OWNED = ".curate-owned.json"
FORMAT = "curate-owned/1"
LOCK = ".curate-owned.lock"  # the single-writer lock (flock), never recorded, never removed
_HELD: dict[str, list] = {}  # this process's locks: real path -> [file descriptor, depth]


def _lock(root: Path, command: str, flag: str) -> None:
    """Takes the directory's single-writer lock for this process (re-entrant within it), or refuses, naming the holder.

    An flock belongs to the open file, so the kernel releases it when the process holding it ends, however it ends."""
    import fcntl

    key = os.path.realpath(root)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            holder = {}
        os.close(fd)
        who = f"`curate {holder.get('command') or command}`" + (
            f" (pid {holder['pid']}, since {holder.get('since')})" if holder.get("pid") else ""
        )
        raise CurationError(
            f"{root}: another {who} is writing to this directory; wait for it to finish or choose another "
            f"{flag} (the lock goes with its process: there is nothing to remove)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(
        fd,
        json.dumps({"pid": os.getpid(), "command": command, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(),
        0,
    )
    _HELD[key] = [fd, 1]


def _unlock(root: Path) -> None:
    key = os.path.realpath(root)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        os.close(held[0])  # closing the file drops the flock


def _abs(p: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p))))


def input_root(spec: str | Path) -> Path:
    """The directory or file a path or glob reads from (a glob's fixed prefix)."""
    s = str(spec)
    if any(ch in s for ch in "*?["):
        s = s.split("*")[0].split("?")[0].split("[")[0]
        s = s if s.endswith(os.sep) or os.path.isdir(s) else os.path.dirname(s)
    return _abs(s or ".")


def check_not_input(output: str | Path, inputs: Iterable[str | Path | None], flag: str = "--output") -> None:
    """One-line refusal of an output that is an input, contains one, or lies inside an input directory."""
    out = _abs(output)
    real_out = Path(os.path.realpath(out))
    for spec in inputs:
        if spec is None or str(spec) == "":
            continue
        inp = input_root(spec)
        for o, i in ((out, inp), (real_out, Path(os.path.realpath(inp)))):
            if o == i:
                raise CurationError(f"{output}: is also an input of this command ({spec}); choose another {flag}")
            if o in i.parents:
                raise CurationError(f"{output}: contains the input {spec}; choose a {flag} outside it")
            if i in o.parents and i.is_dir():
                raise CurationError(f"{output}: lies inside the input directory {spec}; choose a {flag} outside it")


@dataclass
class Output:
    """A claimed output directory and its record of what this command created there."""

    root: Path
    command: str
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)  # files inside the trees that this command's runs made
    previous: bool = False  # the directory already held files this command recorded creating when it was claimed
    locked: bool = False  # this process holds the directory's single-writer lock (claim(..., lock=True))
    seen: set[str] | None = None  # files in the trees when this run claimed the directory (a locked claim)
    running: dict | None = None  # a locked run in progress (pid, start): left in the record by a run that was killed

    @property
    def record(self) -> Path:
        return self.root / OWNED

    def save(self) -> None:
        tmp = self.root / (OWNED + ".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "command": self.command,
                    "files": self.files,
                    "dirs": self.dirs,
                    "trees": self.trees,
                    "made": self.made,
                    **({"running": self.running} if self.running else {}),
                },
                indent=1,
            )
            + "\n"
        )
        os.replace(tmp, self.record)

    def _rel(self, rel: str | Path) -> str:
        p = Path(rel)
        if p.is_absolute():
            p = _abs(p)
            p = (
                p.relative_to(self.root)
                if self.root in p.parents
                else Path(os.path.realpath(p)).relative_to(os.path.realpath(self.root))
            )
        return p.as_posix()

    def _parents(self, rel: str) -> list[str]:
        """Parent directories of `rel` (inside the root) that do not exist yet: this run creates them."""
        out = []
        for parent in reversed(Path(rel).parents[:-1]):
            if not (self.root / parent).exists() and parent.as_posix() not in self.dirs:
                out.append(parent.as_posix())
        return out

    def own(self, *rels: str | Path, tree: bool = False) -> None:
        """Records files (or, with tree=True, working directories owned with all they hold) before they are created."""
        changed = False
        for rel in map(self._rel, rels):
            for d in self._parents(rel):
                self.dirs.append(d)
                changed = True
            bucket = self.trees if tree else self.files
            if rel not in bucket:
                bucket.append(rel)
                changed = True
                if tree and self.seen is not None:  # what it holds now is not this run's
                    self.seen |= self.tree_files([rel])
        if changed:
            self.save()

    def own_dir(self, rel: str | Path) -> Path:
        """Records a directory this run creates (removed by clear() only once empty), and creates it."""
        rel = self._rel(rel)
        new = [d for d in self._parents(rel + "/x") if d not in self.dirs]
        if new:
            self.dirs.extend(new)
            self.save()
        (self.root / rel).mkdir(parents=True, exist_ok=True)
        return self.root / rel

    def path(self, rel: str | Path) -> Path:
        """`root/rel`, recorded as owned (with its new parent directories, which are created)."""
        self.own(rel)
        p = self.root / self._rel(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def tree(self, rel: str | Path) -> Path:
        """A working directory wholly owned by the command (logs, spills), recorded and created."""
        self.own(rel, tree=True)
        p = self.root / self._rel(rel)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def tree_files(self, trees: Iterable[str] | None = None) -> set[str]:
        """Files (relative to the root) inside the given working trees (default: every recorded one)."""
        out = set()
        for t in self.trees if trees is None else trees:
            p = self.root / t
            if p.is_symlink() or p.is_file():
                out.add(t)
                continue
            for dirpath, _, names in os.walk(p):
                out.update((Path(dirpath) / n).relative_to(self.root).as_posix() for n in names)
        return out

    def settle(self) -> None:
        """Records the files that appeared in the working trees since the claim as made by this command."""
        if self.seen is None:
            return
        now = self.tree_files()
        made = [m for m in self.made if (self.root / m).exists() or (self.root / m).is_symlink()]
        made += sorted(now - self.seen - set(made))
        self.seen = now
        if made != self.made or self.running:
            self.made, self.running = made, None
            self.save()

    def _adopt_killed_run(self, rec: dict) -> None:
        """A run that held the lock and died before settling left `running`: the tree files changed since it started
        are its own (older ones, a file the user put there before it, stay unknown and are kept)."""
        since = (rec.get("running") or {}).get("since_ns")
        if since is None:
            return
        known = set(self.made)
        for rel in sorted(self.tree_files() - known):
            try:
                if os.lstat(self.root / rel).st_ctime_ns >= since:
                    self.made.append(rel)
            except OSError:
                pass

    def _remove_made(self, under: str | None = None) -> list[str]:
        """Removes the recorded made files (those under one tree, or all), then the tree directories left empty."""
        removed, keep = [], []
        for rel in self.made:
            if under is not None and not (rel == under or rel.startswith(under.rstrip("/") + "/")):
                keep.append(rel)
                continue
            p = self.root / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(rel)
        self.made = keep
        for t in self.trees if under is None else [under]:
            p = self.root / t
            if p.is_dir() and not p.is_symlink():
                for dirpath, _dirs, _names in sorted(os.walk(p), key=lambda w: w[0].count(os.sep), reverse=True):
                    if not os.listdir(dirpath):
                        os.rmdir(dirpath)
                if not p.exists():
                    removed.append(t + "/")
        return removed

    def remove_tree(self, rel: str) -> None:
        """Empties a working tree of what this command made there (this run's files included); the rest stays."""
        rel = self._rel(rel)
        if self.seen is not None:
            self.settle()
        self._remove_made(rel)
        if self.seen is not None:
            self.seen = self.tree_files()
        self.save()

    def clear(self) -> list[str]:
        """Removes what this command recorded creating: files, the files it made inside its working trees, then the
        directories left empty. A file it did not record creating stays, inside a working tree too."""
        removed = []
        for rel in self.files:
            p = self.root / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(rel)
        removed += self._remove_made()
        for rel in sorted(self.dirs, key=lambda d: d.count("/"), reverse=True):
            p = self.root / rel
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
                removed.append(rel + "/")
        self.files, self.dirs, self.trees, self.made = [], [], [], []
        if self.seen is not None:
            self.seen = set()  # no trees now: a tree recorded again notes what it holds then (own)
        self.previous = False
        self.save()
        return removed

    def release(self) -> None:
        """Ends this command's use of the directory: records what it made in its working trees (`settle`), then drops
        the single-writer lock (idempotent)."""
        if self.locked:
            try:
                self.settle()
            except OSError:  # the directory went (or turned read-only): its tree files stay unrecorded, so kept
                pass
            finally:
                self.locked = False
                _unlock(self.root)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def replace_previous(self, overwrite: bool, what: str = "output") -> None:
        """For commands that do not resume: an earlier output of the same command needs --overwrite, which clears it."""
        if not self.previous:
            return
        if not overwrite:
            raise CurationError(
                f"{self.root}: holds an earlier `curate {self.command}` {what}; pass --overwrite to replace "
                f"it (only what `curate {self.command}` wrote there is removed) or choose a new --output"
            )
        self.clear()


def read_record(root: str | Path) -> dict | None:
    p = _abs(root) / OWNED
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(data.get("format"))
        return data
    except (OSError, ValueError, AttributeError) as e:
        raise CurationError(
            f"{p}: unreadable ownership record ({type(e).__name__}); restore it or choose a new --output"
        ) from None


def _empty(root: Path) -> bool:
    return not any(p.name != LOCK for p in root.iterdir())


def claim(
    output: str | Path,
    command: str,
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
    legacy: Callable[[Path], dict | None] | None = None,
    flag: str = "--output",
    lock: bool = False,
) -> Output:
    """Claims `output` for `command` (see the module docstring); never removes anything itself.

    legacy: for a directory an earlier version of the command wrote (no record yet), returns what it created there
    ({"files": [...], "trees": [...]}) so it is adopted; None if it does not recognise the directory.
    lock: take the directory's single-writer lock (refusing a second writer) before reading the record; the caller
    releases it with `Output.release()` (or `with claim(...) as out:`) when done, else it goes with the process.
    """
    root = _abs(output)
    rec = read_record(root) if root.is_dir() else None
    if rec is not None and rec.get("command") == command:  # an input this command made here earlier (posttrain's DPO
        inputs = [
            i for i in inputs if not _recorded(root, rec, i)
        ]  # starting from its own SFT model) is its own output
    check_not_input(root, inputs, flag)
    if root.exists() and not root.is_dir():
        raise CurationError(f"{output}: exists and is not a directory; pass a directory for {flag}")
    _refuse_foreign(root, output, command, rec, legacy, overwrite, flag)  # before anything is created there
    if not lock:
        return _claim_owned(root, output, command, rec, legacy, overwrite, flag)
    root.mkdir(parents=True, exist_ok=True)
    _lock(root, command, flag)
    try:
        rec = read_record(root)
        out = _claim_owned(root, output, command, rec, legacy, overwrite, flag)  # as the last writer left it
        out._adopt_killed_run(rec or {})
        out.seen = out.tree_files()
        # file times come from the kernel's coarse clock, which lags the precise one by up to a tick: a margin
        out.running = {"pid": os.getpid(), "since_ns": time.time_ns() - 50_000_000}
        out.save()
    except BaseException:
        _unlock(root)
        raise
    out.locked = True
    atexit.register(out.release)  # a caller that ends without release() (a script) still records its tree files
    return out


def _refuse_foreign(root: Path, output, command: str, rec: dict | None, legacy, overwrite: bool, flag: str) -> None:
    if rec is not None:
        if rec.get("command") != command:
            raise CurationError(
                f"{output}: holds a `curate {rec.get('command')}` output; `curate {command}` neither writes "
                f"into nor removes it, even with --overwrite; choose another {flag}"
            )
        return
    if root.is_dir() and not _empty(root) and (legacy is None or legacy(root) is None):
        if overwrite:
            raise CurationError(
                f"{output}: holds files that no `curate {command}` run recorded creating ({OWNED} is "
                f"absent), so --overwrite removes nothing there; choose a new or empty {flag}"
            )
        raise CurationError(
            f"{output}: exists, is not empty and is not a `curate {command}` output; choose a new or empty {flag}"
        )


def _claim_owned(root: Path, output, command: str, rec: dict | None, legacy, overwrite: bool, flag: str) -> Output:
    _refuse_foreign(root, output, command, rec, legacy, overwrite, flag)
    if rec is not None:
        out = Output(
            root,
            command,
            list(rec.get("files", [])),
            list(rec.get("dirs", [])),
            list(rec.get("trees", [])),
            list(rec.get("made", [])),
        )  # a record without `made` (an earlier version): tree files unknown, kept
        out.previous = any((root / rel).exists() for rel in out.files + out.trees)
        return out
    if root.is_dir() and not _empty(root):
        adopted = legacy(root)
        out = Output(root, command, list(adopted.get("files", [])), [], list(adopted.get("trees", [])), previous=True)
        out.made = sorted(out.tree_files())  # recognised as the command's own output: its trees are its own
        out.save()
        return out
    root.mkdir(parents=True, exist_ok=True)
    out = Output(root, command)
    out.save()
    return out


def _recorded(root: Path, rec: dict, spec: str | Path | None) -> bool:
    """Whether `spec` is a file or lies in a tree that the record says the command created under `root`."""
    if spec is None or str(spec) == "":
        return False
    try:
        rel = _abs(spec).relative_to(root).as_posix()
    except ValueError:
        return False
    return rel in rec.get("files", []) or any(
        rel == t or rel.startswith(t.rstrip("/") + "/") for t in rec.get("trees", [])
    )


def file_identity(path: str | Path, rows: int | None = None) -> dict:
    """What a per-shard output records of its input: path, size and the sha256 of its bytes (curation/core/digests.py,
    cached by size, mtime, ctime and inode). A changed identity means the input changed, so the output is redone."""
    from curation.core.digests import cached_sha256

    ident = {"path": str(_abs(path)), "size": os.path.getsize(path), "sha256": cached_sha256(path, full=True)}
    if rows is not None:
        ident["rows"] = rows
    return ident
