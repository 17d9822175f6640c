"""The SVHN format-1 loader (digitStruct.mat, HDF5), on a tiny hand-made copy of the official layout."""

from __future__ import annotations

import numpy as np
import pytest

from stn_core.data import sequences as Q
from stn_core.data.common import DataError
from stn_core.data.svhn import crop_box, load_svhn, read_digit_struct

h5py = pytest.importorskip("h5py")


def _write_digit_struct(path, images: list[tuple[str, list[tuple[int, float, float, float, float]]]]) -> None:
    """digitStruct.mat as MATLAB v7.3 writes it: names and bbox groups behind object references; a field of
    one digit holds the number inline, a field of several holds references to 1×1 numbers."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        name_refs, bbox_refs = [], []
        for i, (name, digits) in enumerate(images):
            nd = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            name_refs.append(nd.ref)
            g = refs.create_group(f"b{i}")
            for j, key in enumerate(("label", "left", "top", "width", "height")):
                vals = [d[j] for d in digits]
                if len(vals) == 1:
                    g.create_dataset(key, data=np.array([[float(vals[0])]]))
                else:
                    rs = [refs.create_dataset(f"v{i}_{key}_{k}", data=np.array([[float(v)]])).ref for k, v in enumerate(vals)]
                    g.create_dataset(key, data=np.array(rs, dtype=h5py.ref_dtype).reshape(-1, 1))
            bbox_refs.append(g.ref)
        ds = f.create_group("digitStruct")
        ds.create_dataset("name", data=np.array(name_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        ds.create_dataset("bbox", data=np.array(bbox_refs, dtype=h5py.ref_dtype).reshape(-1, 1))


def _make_split(folder) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[10:30, 20:30] = 255                                   # a bright bar where the first digit's box is
    Image.fromarray(rgb).save(folder / "1.png")
    Image.fromarray(rgb[:, :40]).save(folder / "2.png")
    Image.fromarray(rgb).save(folder / "3.png")
    _write_digit_struct(folder / "digitStruct.mat", [
        ("1.png", [(1, 20, 10, 10, 20), (10, 32, 10, 10, 20)]),  # "10": label 10 is the digit 0
        ("2.png", [(7, 20, 10, 10, 20)]),                         # one digit: fields inline
        ("3.png", [(k % 10 + 1, 5 + 12 * k, 5, 10, 20) for k in range(6)]),  # six digits: skipped
    ])


@pytest.fixture()
def svhn_dir(tmp_path):
    _make_split(tmp_path)
    return tmp_path


def test_digit_struct_records_map_label_10_to_zero(svhn_dir):
    recs = read_digit_struct(svhn_dir / "digitStruct.mat")
    assert [r.name for r in recs] == ["1.png", "2.png", "3.png"]
    np.testing.assert_array_equal(recs[0].boxes, [[1, 20, 10, 10, 20], [0, 32, 10, 10, 20]])
    np.testing.assert_array_equal(recs[1].boxes, [[7, 20, 10, 10, 20]])
    assert recs[2].boxes.shape == (6, 5)
    assert len(read_digit_struct(svhn_dir / "digitStruct.mat", limit=1)) == 1


def test_load_svhn_crops_skips_long_numbers_and_labels_strings(svhn_dir):
    s = load_svhn(svhn_dir, "tight")
    assert s.images.shape == (2, 1, 64, 64)
    assert s.digits.tolist() == [[1, 0, Q.NULL, Q.NULL, Q.NULL], [7, Q.NULL, Q.NULL, Q.NULL, Q.NULL]]
    assert s.length.tolist() == [2, 1]
    # the union box (20..42 × 10..30) grown by 30 %: the bright bar (x 20..30) fills the crop's left part
    left, top, right, bottom = crop_box(read_digit_struct(svhn_dir / "digitStruct.mat")[0].boxes, "tight")
    assert (left, top, right, bottom) == pytest.approx((31 - 14.3, 20 - 13, 31 + 14.3, 20 + 13))
    col = s.images[0, 0].mean(0)
    assert float(col[15:20].mean()) > 0.5 and float(col[50:].max()) < 0.05
    loose = load_svhn(svhn_dir, "loose")
    assert loose.images.shape == (2, 1, 128, 128)


def test_bad_svhn_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_digit_struct(tmp_path / "digitStruct.mat")
    (tmp_path / "digitStruct.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DataError, match="not an HDF5"):
        read_digit_struct(tmp_path / "digitStruct.mat")
    _write_digit_struct(tmp_path / "digitStruct.mat", [("../evil.png", [(1, 0, 0, 5, 5)])])
    with pytest.raises(DataError, match="plain file name"):
        read_digit_struct(tmp_path / "digitStruct.mat")
    _write_digit_struct(tmp_path / "digitStruct.mat", [("a.png", [(11, 0, 0, 5, 5)])])
    with pytest.raises(DataError, match="label"):
        read_digit_struct(tmp_path / "digitStruct.mat")
    _write_digit_struct(tmp_path / "digitStruct.mat", [("missing.png", [(1, 0, 0, 5, 5)])])
    with pytest.raises(DataError, match="cannot read"):
        load_svhn(tmp_path)


def test_the_sequence_trainer_trains_on_svhn_folders(tmp_path):
    from stn_core.checkpoints import load_model
    from stn_core.train import sequence as TS

    for split in ("train", "test"):
        _make_split(tmp_path / "svhn" / split)
    out = str(tmp_path / "svhn64_cnn")
    meta = TS.main(["--svhn", str(tmp_path / "svhn"), "--model", "seq-cnn", "--steps", "2", "--batch", "4",
                    "--threads", "1", "--precision", "fp32", "--out", out])
    assert meta["task"] == "svhn-tight" and meta["final"] and meta["test_set"]["size"] == 2
    assert meta["extra"]["dataset_note"].startswith("SVHN format 1") and meta["test_error"] in (0.0, 50.0, 100.0)
    assert load_model(out)[1]["task"] == "svhn-tight"
