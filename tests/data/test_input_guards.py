"""Data files that crashed, allocated terabytes or trained silently wrong: class ids that are not
0..K-1, a ragged or NaN row given to predict, an empty class folder, a semicolon CSV, a file that is
not an .npz, and JSONL with a byte-order mark or a lone surrogate. Each is refused in one line
(exit code 2) naming the file and the fix, warned about, or just works."""

import json

import numpy as np
import pytest

from steepest.align.files import read_jsonl
from steepest.cli import main
from steepest.config import recipe_from_dict
from steepest.data import DataInfo, load_data
from steepest.data.images import read_image_folder
from steepest.errors import DataError
from steepest.predict import read_inputs


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv, capsys) -> str:
    code, _, err = run(argv, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def train_csv(tmp_path, path, *sets) -> list[str]:
    extra = [x for s in ("trainer.max_epochs=1", *sets) for x in ("--set", s)]
    return ["train", "-q", "--set", f"data={{format: csv, path: {path}, target: y}}", "--run-dir",
            str(tmp_path / f"run{len(list(tmp_path.glob('run*')))}"), *extra]


def labelled_csv(path, labels, seed: int = 0):
    rng = np.random.default_rng(seed)
    path.write_text("x1,x2,y\n" + "".join(f"{a:.4f},{b:.4f},{c}\n" for (a, b), c in zip(rng.random((len(labels), 2)), labels)))
    return path


# -- class ids that are not 0..K-1 -------------------------------------------------------------------
def test_sparse_class_ids_refused_before_allocating(tmp_path, capsys):
    path = labelled_csv(tmp_path / "sparse.csv", [0, 1_000_000] * 30)  # was: a 1,000,001-way output layer (8 TB)
    err = refused(train_csv(tmp_path, path), capsys)
    assert "sparse.csv labels: the labels are not class ids 0..K-1: 2 distinct values up to 1000000" in err
    assert "relabel them 0..1" in err and "data.task: regression" in err


def test_class_count_rules():
    from steepest.data.checks import class_count

    assert class_count(np.array([0, 1, 2, 2])) == 3
    with pytest.raises(DataError, match="2 distinct values up to 50"):
        class_count(np.array([0, 50]))  # 49 absent of 51
    with pytest.raises(DataError, match="10002 distinct values up to 20002, which would make 20,003 classes, 10,001 of them never seen"):
        class_count(np.concatenate([np.arange(10_001), [20_002]]))  # 10,001 absent: too many however many are present
    with pytest.warns(UserWarning, match=r"classes 0, 1, 2, 3, 4 never occur .* relabel the classes 0\.\.1"):
        assert class_count(np.array([5, 6])) == 7  # a handful absent: warned, not refused


def test_absent_class_ids_warned_naming_them(tmp_path, capsys):
    path = labelled_csv(tmp_path / "onetwo.csv", [1, 2] * 30)  # was: 3 classes, class 0 never seen, silently
    code, _, err = run(train_csv(tmp_path, path), capsys)
    assert code == 0, err
    assert "warning: " in err and "onetwo.csv labels: class 0 never occurs" in err and "1 of the model's 3 outputs" in err
    assert err.count("class 0 never occurs") == 1
    code, _, err = run(train_csv(tmp_path, path, "data.num_classes=3"), capsys)  # the ids are meant: no warning
    assert code == 0 and "never occur" not in err, err


def test_sparse_ids_refused_in_memmap_data(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", np.random.default_rng(0).random((40, 3), dtype=np.float32))
    np.save(folder / "y.npy", np.array([0, 999_999] * 20))
    with pytest.raises(DataError, match="y.npy labels: the labels are not class ids"):
        load_data(recipe_from_dict({"data": {"format": "memmap", "path": str(folder)}}).data)


# -- predict inputs ----------------------------------------------------------------------------------
INFO = DataInfo(source="t", task="classification", input_shape=(2,), num_outputs=2, feature_names=["x1", "x2"])


def test_predict_refuses_a_ragged_row_with_its_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("x1,x2\n1,2\n\n3,4,5\n")  # was: accepted, the third field dropped
    with pytest.raises(DataError, match=r"ragged.csv: row 1 \(line 4\) has 3 fields but the header has 2; fix the ragged row"):
        read_inputs(path, INFO)
    short = tmp_path / "short.csv"
    short.write_text("1,2\n3\n")  # no header: the first row sets the width
    with pytest.raises(DataError, match=r"row 1 \(line 2\) has 1 fields but the first row has 2"):
        read_inputs(short, INFO)
    text = tmp_path / "text.csv"
    text.write_text("x2,x1\n1,2\n3,abc\n")
    with pytest.raises(DataError, match=r"row 1 \(line 3\) has non-numeric value 'abc' in column 'x1'"):
        read_inputs(text, INFO)
    good = tmp_path / "good.csv"
    good.write_text("x2,x1,extra\n1,2,a\n3,4,b\n")
    assert read_inputs(good, INFO).tolist() == [[2.0, 1.0], [4.0, 3.0]]


def test_predict_nan_says_before_predicting(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, x=np.array([[1.0, 2.0], [np.nan, 1.0]]))
    with pytest.raises(DataError, match="row 1 contains NaN; drop or impute that row before predicting"):
        read_inputs(path, INFO)


@pytest.mark.parametrize("content, names", [(bytes(range(200)), ["not a numeric .npz archive", "numpy.savez"]),
                                            (b"hello", ["not a numeric .npz archive"]),
                                            (b"\x93NUMPY" + b"\0" * 40, ["a single .npy array"])])
def test_a_file_that_is_not_an_npz(tmp_path, capsys, content, names):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)  # was: numpy's "pickled data ... allow_pickle" advice
    err = refused(["train", "-q", "--set", f"data={{format: npz, path: {path}}}", "--set", "trainer.max_epochs=1",
                   "--run-dir", str(tmp_path / "run")], capsys)
    assert all(n in err for n in names) and "pickle" not in err, err
    with pytest.raises(DataError, match="not a numeric .npz archive"):
        read_inputs(path, INFO)


def test_an_npz_of_python_objects(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="array 'x' holds Python objects"):
        read_inputs(path, INFO)


# -- CSV delimiters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sep, shown, name", [(";", ";", "semicolons"), ("\t", "\\t", "tabs")])
def test_other_delimiter_suggested(tmp_path, capsys, sep, shown, name):
    path = tmp_path / "semi.csv"
    path.write_text(f"x1{sep}x2{sep}y\n" + "".join(f"{i % 7}{sep}{i % 5}{sep}{i % 2}\n" for i in range(40)))
    err = refused(train_csv(tmp_path, path), capsys)
    assert f"probably separated by {name}" in err and f'set data.options.delimiter: "{shown}"' in err, err
    code, _, err = run(train_csv(tmp_path, path, f"data.options.delimiter={json.dumps(sep)}"), capsys)
    assert code == 0, err


# -- image folders -----------------------------------------------------------------------------------
def test_empty_class_folder_refused(tmp_path, capsys):
    root = tmp_path / "images"
    for name, count in (("cat", 3), ("dog", 0), ("owl", 2)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"class folder 'dog' holds no images .*add images to it or remove the folder"):
        read_image_folder(root)
    err = refused(["train", "-q", "--set", f"data={{format: image_folder, path: {root}, image_size: 8}}",
                   "--set", "trainer.max_epochs=1", "--run-dir", str(tmp_path / "run")], capsys)
    assert "class folder 'dog' holds no images" in err


# -- alignment JSONL ---------------------------------------------------------------------------------
def test_jsonl_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"instruction": "hi", "output": "x"}).encode() + b"\n")  # Notepad's UTF-8
    assert read_jsonl(path, ("instruction", "output")) == [{"instruction": "hi", "output": "x"}]


def test_jsonl_lone_surrogate_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text('{"instruction": "ok", "output": "y"}\n{"instruction": "\\ud800", "output": "x"}\n')
    err = refused(["align", "sft", str(path), "--epochs", "1", "--run-dir", str(tmp_path / "a1")], capsys)
    assert "s.jsonl:2: field 'instruction' holds a lone surrogate escape" in err and "fix or remove" in err
    pair = tmp_path / "pair.jsonl"
    pair.write_text('{"instruction": "\\ud83d\\ude00", "output": "x"}\n')  # a surrogate pair is one character
    assert read_jsonl(pair, ("instruction",))[0]["instruction"] == "\U0001F600"
