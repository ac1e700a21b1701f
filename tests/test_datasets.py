"""Data set folders, file lists and MNIST-style .npz; errors name file, row and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pccc.datasets import load_dataset, split_of
from pccc.ir.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(folder: Path, name: str, rows: list[str], gz: bool = False) -> Path:
    p = folder / (name + (".gz" if gz else ""))
    data = ("\n".join(rows) + "\n").encode()
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


def test_folder_with_three_splits(tmp_path):
    _write(tmp_path, "toy.train.data", ["0,1,1", "1,0,1"], gz=True)
    _write(tmp_path, "toy.valid.data", ["1,1,1"])
    _write(tmp_path, "toy.test.data", ["0,0,0", "1,1,0"])
    ds = load_dataset(tmp_path)
    assert ds.train.tolist() == [[0, 1, 1], [1, 0, 1]]
    assert ds.valid.shape == (1, 3) and ds.test.shape == (2, 3)
    assert ds.num_cats == 2 and ds.image_shape is None
    assert ds.files[1].endswith("toy.valid.data")


def test_comma_separated_file_list_and_missing_split(tmp_path):
    a = _write(tmp_path, "x.train.csv", ["0,2", "1,1"])
    b = _write(tmp_path, "x.test.csv", ["2,2"])
    ds = load_dataset(f"{a},{b}")
    assert ds.valid is None and ds.num_cats == 3 and ds.files == (str(a), "", str(b))


def test_width_mismatch_names_the_file(tmp_path):
    _write(tmp_path, "x.train.data", ["0,1", "1,1"])
    _write(tmp_path, "x.test.data", ["0,1,1"])
    with pytest.raises(DataError, match=r"x\.test\.data.*3 columns.*2"):
        load_dataset(tmp_path)


def test_non_integer_text_names_row_and_column(tmp_path):
    _write(tmp_path, "x.train.data", ["0,1", "1,abc"])
    with pytest.raises(DataError, match=r"x\.train\.data.*(row|line) 2"):
        load_dataset(tmp_path)


def test_no_train_split(tmp_path):
    _write(tmp_path, "x.valid.data", ["0,1"])
    with pytest.raises(DataError, match="train"):
        load_dataset(tmp_path)


def test_npz_images(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "tiny.npz"
    np.savez(p, x_train=rng.integers(0, 256, (24, 2, 3), dtype=np.uint8),
             x_test=rng.integers(0, 256, (5, 2, 3), dtype=np.uint8))
    ds = load_dataset(p, valid_fraction=0.25)
    assert ds.image_shape == (2, 3)
    assert ds.train.shape == (18, 6) and ds.valid.shape == (6, 6) and ds.test.shape == (5, 6)
    assert ds.train.dtype == np.int64


def test_split_names():
    assert split_of(Path("nltcs.valid.data.gz")) == "valid"
    assert split_of(Path("a.train.npy")) == "train"
    assert split_of(Path("train.csv")) == "train"
    assert split_of(Path("data.csv")) is None


@pytest.mark.skipif(not (SHARED / "debd" / "nltcs").exists(), reason="../shared/data absent")
def test_shared_nltcs_by_name():
    ds = load_dataset(SHARED / "debd" / "nltcs")
    assert (ds.train.shape, ds.valid.shape, ds.test.shape) == ((16181, 16), (2157, 16),
                                                               (3236, 16))
