"""Writing results without losing files: every file and folder pplang writes for a user (results
folders, `--output` files, plots, generated modules) goes through here.

- Nothing that exists is replaced unless the caller asks (`overwrite=True`; `--force` on the
  command line). An empty folder holds nothing to lose and may be written into.
- A path that names a file where a folder is expected (or the reverse) is an error, even when
  asked to overwrite.
- A folder is written whole into a temporary sibling (`.NAME.*.tmp`) and renamed into place; an
  existing one is first renamed aside (`.NAME.*.old`) and deleted only after the new one is in
  place. A crash while writing leaves the previous folder as it was; only a crash between the two
  renames leaves it under its `.old` name beside the (not yet renamed) new one.
- A file is written to a temporary sibling and renamed over its target, so a reader never sees
  half of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pplang.compiler.diagnostics import PplError, error

REPLACE_HINT = "choose another name, or replace it: --force on the command line, overwrite=True from Python"


def check_target(path: str | Path, kind: str, overwrite: bool, what: str = "output") -> Path:
    """`path` as a Path once it is known that writing a `kind` ("file" or "folder") there loses
    nothing that was not asked for: it does not exist, is an empty folder, or `overwrite` is set;
    and it (and the first of its parents that exists) has the right kind."""
    path = Path(path)
    if kind not in ("file", "folder"):
        raise ValueError(f"kind is 'file' or 'folder', not {kind!r}")
    if path.is_symlink() and not path.exists():
        raise error(f"cannot write the {what} {path}: it is a broken symbolic link",
                    hint="remove the link or choose another name")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise error(f"the {what} {path} is a file, not a folder", hint="name a folder (the file is left as it is)")
        if kind == "file" and path.is_dir():
            raise error(f"the {what} {path} is a folder, not a file",
                        hint="name a file inside it or elsewhere (the folder is left as it is)")
        if not overwrite and (kind == "file" or any(path.iterdir())):
            raise error(f"the {what} {path} already exists and would be replaced", hint=REPLACE_HINT)
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise error(f"cannot write the {what} {path}: {above} is a file, not a folder", hint="choose another path")
    return path


def check_parent(path: Path, what: str) -> Path:
    """`path`, once it is known that its folder exists (a file is written into an existing folder)."""
    if not path.parent.is_dir():
        raise error(f"cannot write the {what} {path}: the folder {path.parent} does not exist",
                    hint="create the folder first, or choose another path")
    return path


def refuse_existing(path: Path, what: str) -> PplError:
    return error(f"the {what} {path} already exists and would be replaced", hint=REPLACE_HINT)


def oserror(path: Path, exc: OSError, what: str) -> PplError:
    return error(f"cannot write the {what} {path}: {exc.strerror or exc}",
                 hint="check that the folder exists and is writable")


@contextmanager
def new_folder(path: str | Path, overwrite: bool = False, keep: Sequence[str] = (),
               what: str = "results folder") -> Iterator[Path]:
    """A fresh temporary folder beside `path` to write into; when the block ends without an
    exception it takes `path`'s place (the old folder, if any, is deleted after that), else it is
    removed and `path` is left as it was. `keep` names entries of the folder being replaced (a
    fit's checkpoint) that the new one takes over: hard-linked, or copied where links fail."""
    path = check_target(path, "folder", overwrite, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise oserror(path, exc, what) from None
    try:
        yield tmp
        for name in keep:
            if (path / name).is_dir():
                shutil.copytree(path / name, tmp / name, copy_function=link_or_copy)
            elif (path / name).exists():
                link_or_copy(path / name, tmp / name)
        publish_folder(tmp, path, overwrite, what)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise oserror(path, exc, what) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_folder(tmp: Path, path: Path, overwrite: bool, what: str) -> None:
    """Rename the finished `tmp` to `path`, moving an existing `path` aside first and deleting it
    only once `tmp` is in place (restoring it if that rename fails)."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)
        return
    if not path.is_dir():
        raise error(f"the {what} {path} is a file, not a folder", hint="name a folder (the file is left as it is)")
    if not overwrite and any(path.iterdir()):  # appeared while the folder was being written
        raise refuse_existing(path, what)
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, old / path.name)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old / path.name, path)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link (instant, no space, and later replacements of `src` do not touch it), or a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextmanager
def new_file(path: str | Path, overwrite: bool = False, what: str = "output") -> Iterator[IO[bytes]]:
    """A binary file to write `path`'s new content to; it replaces `path` when the block ends
    without an exception (else `path` is left as it was). The folder must exist."""
    path = check_parent(check_target(path, "file", overwrite, what), what)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise oserror(path, exc, what) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        if not overwrite and path.exists():  # appeared while the file was being written
            raise refuse_existing(path, what)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; a plain file would not be
        os.replace(tmp, path)
    except OSError as exc:
        raise oserror(path, exc, what) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_file(path: str | Path, content: str | bytes, overwrite: bool = False, what: str = "output") -> Path:
    """Write `content` (text as UTF-8) to `path` as `new_file` does."""
    with new_file(path, overwrite, what) as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return Path(path)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def inside(path: str | Path, folder: str | Path) -> str | None:
    """The first component of `path` below `folder` ("." when they are the same), None when `path`
    is not inside `folder`."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else "."


def folder_for(folder: str | Path, names: Sequence[str], overwrite: bool, what: str = "plot") -> Path:
    """`folder`, created if needed, once it is known that writing the files `names` into it
    replaces none unless `overwrite` (other files in it are left alone)."""
    folder = check_target(folder, "folder", True, f"{what} folder")
    for name in names:
        check_target(folder / name, "file", overwrite, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise oserror(folder, exc, f"{what} folder") from None
    return folder


def save_figure(fig: Any, path: str | Path, overwrite: bool = False, dpi: int = 100) -> Path:
    """A matplotlib figure written to `path` (format from its suffix, PNG without one) as
    `new_file` writes."""
    path = Path(path)
    with new_file(path, overwrite, "plot") as f:
        fig.savefig(f, format=path.suffix[1:] or "png", dpi=dpi)
    return path
