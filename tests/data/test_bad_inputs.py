"""Data a user can get wrong: each is refused in one line naming the problem and the fix, or just works."""

import gzip
import re
import struct

import numpy as np
import pytest

from steepest.cli import main
from steepest.config import recipe_from_dict
from steepest.data import DataInfo, load_data
from steepest.data.idx import read_idx
from steepest.errors import DataError
from steepest.predict import read_inputs


def train(tmp_path, capsys, data: str, *sets: str) -> tuple[int, str, str]:
    """`steepest train` on a data section (YAML flow mapping) into a new run directory (run0, run1, ...);
    returns (exit code, stdout, stderr)."""
    extra = [x for s in ("trainer.max_epochs=1", *sets) for x in ("--set", s)]
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    code = main(["train", "--set", f"data={data}", "--run-dir", str(run), "-q", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def refused(tmp_path, capsys, data: str, *sets: str) -> str:
    """The one error line of a `steepest train` that must stop with exit code 2."""
    code, _, err = train(tmp_path, capsys, data, *sets)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def csv_text(rows: int, header: str = "a,b,label", label=lambda i: i % 2) -> str:
    return header + "\n" + "".join(f"{i % 7},{i % 5},{label(i)}\n" for i in range(rows))


def csv_data(path) -> str:
    return f"{{format: csv, path: {path}, target: label}}"


# -- duplicate column names ------------------------------------------------------------------------
def test_duplicate_csv_columns_refused_in_training(tmp_path, capsys):
    path = tmp_path / "dup.csv"
    path.write_text(csv_text(40, "a,a,label"))
    err = refused(tmp_path, capsys, csv_data(path))
    assert "column name 'a' appears 2 times (columns 1 and 2)" in err and "unique name" in err


def test_duplicate_columns_refused_in_predict_input(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    (tmp_path / "train.csv").write_text("a,b,label\n" + "".join(f"{u:.4f},{v:.4f},{int(v > 0)}\n" for u, v in zip(a, b)))
    code, _, err = train(tmp_path, capsys, csv_data(tmp_path / "train.csv"), "trainer.max_epochs=40")
    assert code == 0, err
    good = tmp_path / "in.csv"
    good.write_text("b,a\n-2,0.5\n2,0.5\n-2,-0.5\n2,-0.5\n")  # columns matched by name, in any order
    assert main(["predict", str(tmp_path / "run0"), str(good)]) == 0
    assert capsys.readouterr().out.split() == ["0", "1", "0", "1"]
    dup = tmp_path / "dup.csv"
    dup.write_text("b,a,b\n-2,0.5,2\n2,0.5,-2\n-2,-0.5,2\n2,-0.5,-2\n")  # which 'b' is meant cannot be known
    assert main(["predict", str(tmp_path / "run0"), str(dup)]) == 2
    err = capsys.readouterr().err
    assert "column name 'b' appears 2 times (columns 1 and 3)" in err and err.count("\n") == 1


# -- too few samples or classes --------------------------------------------------------------------
def test_one_row_refused_and_the_stated_minimum_trains(tmp_path, capsys):
    one = tmp_path / "one.csv"
    one.write_text("a,b,label\n1,2,0\n")
    err = refused(tmp_path, capsys, csv_data(one))
    assert "1 sample" in err and "validation and test splits would be empty" in err and "at least 4 samples" in err
    three = tmp_path / "three.csv"
    three.write_text(csv_text(3))
    assert "at least 4 samples" in refused(tmp_path, capsys, csv_data(three))
    four = tmp_path / "four.csv"
    four.write_text(csv_text(4))
    code, out, err = train(tmp_path, capsys, csv_data(four))
    assert code == 0, err


def test_zero_validation_fraction_refused(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text(csv_text(40))
    err = refused(tmp_path, capsys, f"{{format: csv, path: {path}, target: label, split: [0.8, 0.0, 0.2]}}")
    assert "validation split" in err and "data.split" in err


def test_single_class_refused(tmp_path, capsys):
    path = tmp_path / "one_class.csv"
    path.write_text(csv_text(40, label=lambda i: "cat"))
    err = refused(tmp_path, capsys, csv_data(path))
    assert "all 40 samples are class 'cat'" in err and "at least 2 classes" in err
    npz = tmp_path / "one_class.npz"
    np.savez(npz, x=np.arange(80.0).reshape(40, 2), y=np.zeros(40, np.int64))
    assert "at least 2 classes" in refused(tmp_path, capsys, f"{{format: npz, path: {npz}}}", "data.task=classification")


# -- zero rows -------------------------------------------------------------------------------------
def test_header_only_csv_and_empty_npz_refused(tmp_path, capsys):
    header = tmp_path / "header.csv"
    header.write_text("a,b,label\n\n")
    assert "no data rows" in refused(tmp_path, capsys, csv_data(header))
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 3)), y=np.zeros(0))
    assert "no samples" in refused(tmp_path, capsys, f"{{format: npz, path: {empty}}}")


# -- text encodings --------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_csv_with_byte_order_mark_reads_like_utf8(tmp_path, encoding):
    text = csv_text(40, "label,a,b").replace("\n", "\r\n")
    (tmp_path / "plain.csv").write_text(text, encoding="utf-8")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(("\ufeff" + text).encode(encoding) if encoding == "utf-16-be" else text.encode(encoding))
    cfg = lambda p: recipe_from_dict({"data": {"format": "csv", "path": str(p), "target": "label"}}).data  # noqa: E731
    plain, read = load_data(cfg(tmp_path / "plain.csv")), load_data(cfg(bom))
    assert read.info.feature_names == ["a", "b"] and read.train.x.equal(plain.train.x) and read.test.y.equal(plain.test.y)


def test_utf8_bom_csv_trains(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(40, "label,a,b").encode())
    code, out, err = train(tmp_path, capsys, csv_data(path))
    assert code == 0 and out.startswith("test accuracy"), err


def test_latin1_csv_refused_with_the_conversion(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes(csv_text(40, label=lambda i: "café" if i % 2 else "thé").encode("latin-1"))
    err = refused(tmp_path, capsys, csv_data(path))
    assert "line 2 is not UTF-8 (byte 0xe9)" in err and f"iconv -f latin1 -t utf-8 {path} >" in err


def test_utf16_without_byte_order_mark_refused(tmp_path, capsys):
    path = tmp_path / "u16.csv"
    path.write_bytes(csv_text(40).encode("utf-16-le"))
    assert "iconv -f utf-16le -t utf-8" in refused(tmp_path, capsys, csv_data(path))


# -- array shapes and ranges -----------------------------------------------------------------------
def test_npz_with_scalar_x_or_3d_y_names_the_array(tmp_path, capsys):
    scalar = tmp_path / "scalar.npz"
    np.savez(scalar, x=np.float32(3), y=np.zeros(60))
    err = refused(tmp_path, capsys, f"{{format: npz, path: {scalar}}}")
    assert "'x' is a scalar" in err and "(n_samples, ...)" in err
    cube = tmp_path / "cube.npz"
    np.savez(cube, x=np.zeros((60, 3)), y=np.zeros((60, 2, 2)))
    err = refused(tmp_path, capsys, f"{{format: npz, path: {cube}}}", "loss={name: mse}")
    assert "'y' has shape (60, 2, 2); expected (60,) or (60, k)" in err
    other = tmp_path / "keys.npz"
    np.savez(other, feats=np.zeros((60, 3)), target=np.zeros((60, 1, 1)))
    err = refused(tmp_path, capsys, f"{{format: npz, path: {other}, options: {{x_key: feats, y_key: target}}}}")
    assert "'target' has shape (60, 1, 1)" in err


def test_truncated_npz_is_one_line(tmp_path, capsys):
    path = tmp_path / "t.npz"
    np.savez(path, x=np.zeros((10, 3)), y=np.zeros(10))
    path.write_bytes(path.read_bytes()[:200])
    assert "cannot read .npz" in refused(tmp_path, capsys, f"{{format: npz, path: {path}}}")


def test_values_beyond_float32_refused_with_row(tmp_path, capsys):
    targets = tmp_path / "big.csv"
    targets.write_text("a,b,y\n" + "".join(f"{i},{i * 2},{i * 0.5}\n" for i in range(40)) + "3,4,-1e308\n")
    err = refused(tmp_path, capsys, f"{{format: csv, path: {targets}, target: y}}", "loss={name: mse}")
    assert "row 40 has target -1e+308, beyond the float32 range" in err
    features = tmp_path / "bigx.csv"
    features.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)) + "1e308,4,1\n")
    assert "row 40 (line 42) has value 1e+308, beyond the float32 range" in refused(tmp_path, capsys, csv_data(features))
    npz = tmp_path / "big.npz"
    x = np.ones((40, 2))
    x[7, 1] = 1e300
    np.savez(npz, x=x, y=np.arange(40) % 2)
    assert "row 7 has value 1e+300" in refused(tmp_path, capsys, f"{{format: npz, path: {npz}}}")


# -- predict inputs --------------------------------------------------------------------------------
def test_predict_inputs_refused_in_one_line(tmp_path):
    info = DataInfo(source="t", task="classification", input_shape=(2,), num_outputs=2, feature_names=["a", "b"])
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfb,a\n1,2\n")
    assert read_inputs(bom, info).tolist() == [[2.0, 1.0]]
    cases = {
        "header.csv": (b"a,b\n", "no data rows"),
        "latin.csv": ("a,b\n1,2\ncaf\u00e9,3\n".encode("latin-1"), "line 3 is not UTF-8"),
        "big.csv": (b"a,b\n1,2\n1e308,3\n", "row 1 has value 1e+308"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=re.escape(message)):
            read_inputs(tmp_path / name, info)
    np.savez(tmp_path / "scalar.npz", x=np.float32(1))
    with pytest.raises(DataError, match="'x' is a scalar"):
        read_inputs(tmp_path / "scalar.npz", info)
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2)))
    with pytest.raises(DataError, match="no samples"):
        read_inputs(tmp_path / "empty.npz", info)


# -- IDX headers -----------------------------------------------------------------------------------
def idx_bytes(dims, body: bytes, ndim: int | None = None) -> bytes:
    return bytes([0, 0, 0x08, len(dims) if ndim is None else ndim]) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize("content, message", [
    (idx_bytes([7] * 255, b""), "255 dimensions"),
    (idx_bytes([], b"\x00" * 10, ndim=255), "255 dimensions"),
    (idx_bytes([], b"", ndim=0), "0 dimensions"),
    (idx_bytes([3], b"", ndim=3), "header is cut short"),
    (idx_bytes([0xFFFFFFFF] * 4, b"\x00" * 16), "truncated"),  # 2^128 bytes promised: nothing allocated
    (idx_bytes([2, 2], b"\x00" * 5), "more data than its header"),
    (b"\x00\x00\x08", "not an IDX file"),
], ids=["255-dims", "255-dims-short", "0-dims", "short-header", "huge-dims", "extra-bytes", "short-magic"])
def test_crafted_idx_headers_are_one_line_errors(tmp_path, content, message):
    for path in (tmp_path / "f-idx1-ubyte", tmp_path / "f-idx1-ubyte.gz"):
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        with pytest.raises(DataError, match=message) as caught:
            read_idx(path)
        assert "\n" not in str(caught.value)


def test_corrupt_gzip_stream_is_a_data_error(tmp_path):
    body = np.random.default_rng(0).integers(0, 4, 4000, dtype=np.uint8).tobytes()
    packed = bytearray(gzip.compress(idx_bytes([4000], body), mtime=0))
    packed[60:90] = b"\x13" * 30  # zlib: "invalid distance too far back"
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)
