"""Data sets with train/validation/test splits: folders, file lists, MNIST-style ``.npz``.

Single files are read by :func:`pccc.data.load_data`; this module finds the splits.

- a folder holding ``*.train.*``, ``*.valid.*`` and ``*.test.*`` files (the 20 binary
  density-estimation sets: ``debd/nltcs/nltcs.train.data.gz`` ...);
- a list of files, each named with its split (``x.train.npy,x.valid.npy,x.test.npy``);
- an MNIST-style ``.npz`` with ``x_train`` and ``x_test`` (images are flattened row-major;
  the last ``valid_fraction`` of the training images become the validation split);
- a name: a folder under ``$PCCC_DATA`` or ``../shared/data`` (``nltcs``, ``mnist``).

Example::

    ds = load_dataset("../shared/data/debd/nltcs")
    ds.train.shape, ds.num_cats, ds.image_shape     # (16181, 16), 2, None
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pccc.data import load_data
from pccc.ir.errors import DataError

SPLITS = ("train", "valid", "test")

#: the 20 binary density-estimation benchmarks, as named in their folders
DEBD = ("nltcs", "msnbc", "kdd", "plants", "baudio", "jester", "bnetflix", "accidents",
        "tretail", "pumsb_star", "dna", "kosarek", "msweb", "book", "tmovie", "cwebkb", "cr52",
        "c20ng", "bbc", "ad")


@dataclass
class Dataset:
    """Train, validation and test arrays ``[N, V]`` (int64, ``-1`` missing, or float64)."""

    name: str
    train: np.ndarray
    valid: np.ndarray | None
    test: np.ndarray | None
    image_shape: tuple[int, ...] | None = None
    """``(H, W)`` for images (bits per dimension are reported for them)"""
    files: tuple[str, str, str] = ("", "", "")
    """the file (or ``file:key``) of the train, valid and test splits ("" when absent)"""

    @property
    def num_vars(self) -> int:
        return int(self.train.shape[1])

    @property
    def num_cats(self) -> int | None:
        """``max + 1`` over all splits when the training data is integer (None: continuous).

        A non-integer value in another split does not make the data continuous: it is
        refused later, against the structure built from the training split.
        """
        if self.train.dtype.kind == "f":
            return None
        arrs = [a for a in (self.train, self.valid, self.test) if a is not None and a.size]
        tops = [np.nanmax(a) for a in arrs if not np.all(np.isnan(a))]
        return max(2, int(max(tops, default=1)) + 1)


def data_roots() -> list[Path]:
    """Folders searched for a data set given by name."""
    roots = [Path(p) for p in os.environ.get("PCCC_DATA", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parents[1]
    roots += [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return roots


def _resolve_name(name: str) -> Path | None:
    for root in data_roots():
        for cand in (root / name, root / "debd" / name, root / name / f"{name}.npz"):
            if cand.exists():
                return cand
    return None


def split_of(path: Path) -> str | None:
    """``train``/``valid``/``test`` from a file name like ``nltcs.valid.data.gz``."""
    parts = path.name.lower().split(".")
    for split in SPLITS:
        if split in parts[:-1] or (split == "valid" and "val" in parts[:-1]):
            return split
    return None


def _from_files(files: list[Path], name: str) -> Dataset:
    found: dict[str, Path] = {}
    for f in files:
        split = split_of(f)
        if split is None:
            raise DataError(f"{f}: cannot tell the split (name it *.train.*, *.valid.*, *.test.*)")
        if split in found:
            raise DataError(f"{f}: a second {split} file (first: {found[split]})")
        found[split] = f
    if "train" not in found:
        raise DataError(f"{name}: no *.train.* file among {', '.join(str(f) for f in files)}")
    arrays = {s: load_data(found[s]) if s in found else None for s in SPLITS}
    _check_columns(arrays, found)
    train = arrays["train"]
    assert train is not None
    return Dataset(name, train, arrays["valid"], arrays["test"],
                   files=tuple(str(found[s]) if s in found else "" for s in SPLITS))  # type: ignore


def _check_columns(arrays: dict[str, np.ndarray | None], files: dict[str, Path]) -> None:
    train = arrays["train"]
    assert train is not None
    for split, arr in arrays.items():
        if arr is not None and arr.shape[1] != train.shape[1]:
            raise DataError(f"{files[split]}: row 1: {arr.shape[1]} columns, but the train "
                            f"split has {train.shape[1]}")


def _from_npz(path: Path, valid_fraction: float) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "x_train" not in keys:
            raise DataError(f"{path}: no x_train array (has: {', '.join(sorted(keys))})")
        xtr = np.asarray(z["x_train"])
        xte = np.asarray(z["x_test"]) if "x_test" in keys else None
        xva = np.asarray(z["x_valid"]) if "x_valid" in keys else None
    shape = tuple(xtr.shape[1:]) if xtr.ndim > 2 else None
    flat = [None if a is None else a.reshape(len(a), -1) for a in (xtr, xva, xte)]
    train, valid, test = flat
    assert train is not None
    if valid is None and valid_fraction > 0:
        cut = len(train) - int(round(len(train) * valid_fraction))
        train, valid = train[:cut], train[cut:]
    names = (f"{path}:x_train", f"{path}:x_valid", f"{path}:x_test")
    if "x_valid" not in keys and valid is not None:
        names = (names[0], f"{path}:x_train (last {len(valid)} rows)", names[2])
    conv = [None if a is None else _as_int(a) for a in (train, valid, test)]
    return Dataset(path.stem, conv[0], conv[1], conv[2], image_shape=shape,  # type: ignore
                   files=names)


def _as_int(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) if a.dtype.kind in "uib" else a.astype(np.float64)


def load_dataset(spec: str | os.PathLike[str] | list[str], *, valid_fraction: float = 1 / 12
                 ) -> Dataset:
    """Load the splits of a data set.

    Args:
        spec: a folder, an ``.npz`` with ``x_train``/``x_test``, a list of split files (or one
            comma-separated string of them), or a data set name (see :func:`data_roots`).
        valid_fraction: share of the training images held out for validation when an
            ``.npz`` has no ``x_valid`` (MNIST: 5,000 of 60,000).

    Raises:
        DataError: a missing split, files of different widths, or a bad value (file, row and
            column named).
    """
    if isinstance(spec, list | tuple):
        return _from_files([Path(p) for p in spec], Path(str(spec[0])).parent.name)
    text = str(spec)
    if "," in text:
        return _from_files([Path(p) for p in text.split(",") if p], text)
    path = Path(text)
    if not path.exists():
        found = _resolve_name(text)
        if found is None:
            raise DataError(f"{text}: no such file, folder or data set")
        path = found
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and split_of(p))
        npz = sorted(path.glob("*.npz"))
        if not files and len(npz) == 1:
            return _from_npz(npz[0], valid_fraction)
        if not files:
            raise DataError(f"{path}: no *.train.*, *.valid.*, *.test.* files")
        return _from_files(files, path.name)
    if path.suffix == ".npz" and split_of(path) is None:
        return _from_npz(path, valid_fraction)
    if split_of(path) is None:  # one file of training data, no held-out splits
        return Dataset(path.name.split(".")[0], load_data(path), None, None,
                       files=(str(path), "", ""))
    return _from_files([path], path.stem)
