"""Write an output file whole or not at all, and never replace a file the caller did not mean to replace.

A command checks its output path when it starts, but writes at the end, minutes later; a file that appears
there in the meantime (another process, a user) must survive unless ``overwrite`` was asked for.  The data goes
to a random, exclusively created temporary name in the same folder; the last step is ``os.replace`` with
``overwrite``, and otherwise ``os.link``, which fails when the final name exists.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically; without ``overwrite`` raise ``FileExistsError`` if ``path`` exists.

    A killed run leaves ``path`` either absent, old or complete, never partial; a planted file or symbolic link at
    the temporary name is never written through (``mkstemp`` creates it with ``O_EXCL``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # what a plain open() would have given, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_exclusively(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _link_exclusively(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it: a hard link, or ``O_EXCL`` where links are unsupported."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "a file appeared there while the command ran; pass --overwrite to "
                              "replace it", str(path)) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
    # No hard links here (some network and FAT file systems): claim the name first, then fill it.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "a file appeared there while the command ran; pass --overwrite to "
                              "replace it", str(path)) from None
    os.replace(tmp, path)


def save_image_atomically(image, path: str | os.PathLike, *, overwrite: bool, **options) -> None:
    """``PIL.Image.save`` through :func:`write_atomically` (the format from the file name)."""
    import io

    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    write_atomically(path, buffer.getvalue(), overwrite=overwrite)
