"""Atomic file writing: the runtime's one writer of sidecars and drawn images."""
import os
import os.path as osp
import tempfile

__all__ = ['atomic_write_bytes']


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + ``os.replace``.

    An interruption leaves the old file (or none), never a partial one and no temporary file.
    An existing ``path`` is only replaced with ``overwrite=True`` (``FileExistsError``
    otherwise). The new file gets the usual ``0o666 & ~umask`` permissions.
    """
    if osp.exists(path) and not overwrite:
        raise FileExistsError(f'{path} exists; pass --force (overwrite=True) to replace it')
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
