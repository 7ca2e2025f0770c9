"""A tester's own data files: each fault they found is refused in one line naming the problem and the
fix, or now just works (given statistics, text labels, class ids in a column)."""

import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

from steepest.cli import main
from steepest.config import recipe_from_dict
from steepest.data import load_data
from steepest.data.checks import batch_checker
from steepest.data.images import read_image_csv
from steepest.data.stream import IterableLoader, SampleLoader
from steepest.errors import DataError

COMPONENTS = textwrap.dedent('''
    import torch
    from torch.utils.data import Dataset

    def plain():
        return torch.randn(120, 4)

    def arrays():
        x = torch.randn(120, 4)
        return x, (x[:, 0] > 0).long()

    class XOnly(Dataset):
        def __len__(self):
            return 120

        def __getitem__(self, i):
            return torch.randn(4)

    class Triple(Dataset):
        def __len__(self):
            return 120

        def __getitem__(self, i):
            return torch.randn(4), torch.randn(4), i % 2

    class Words(Dataset):
        def __len__(self):
            return 60

        def __getitem__(self, i):
            return torch.full((4,), float(i % 2)), ["cat", "dog"][i % 2]

    def word_splits():
        return {"train": Words(), "val": Words()}
''')


@pytest.fixture
def components(tmp_path, monkeypatch):
    (tmp_path / "ufd_components.py").write_text(COMPONENTS)
    monkeypatch.syspath_prepend(str(tmp_path))


def train(tmp_path, capsys, data: str, *sets: str) -> tuple[int, str, str]:
    extra = [x for s in ("trainer.max_epochs=1", "model.hidden=[8]", *sets) for x in ("--set", s)]
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    code = main(["train", "--set", f"data={data}", "--run-dir", str(run), "-q", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def refused(tmp_path, capsys, data: str, *sets: str, command: str = "train") -> str:
    """The one error line of a command that must stop with exit code 2."""
    if command == "train":
        code, _, err = train(tmp_path, capsys, data, *sets)
    else:
        code = main([command, "--set", f"data={data}", *[x for s in sets for x in ("--set", s)]])
        err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def load(**data):
    return load_data(recipe_from_dict({"data": data}).data)


def base_csv(path, rows: int = 200):
    rng = np.random.default_rng(0)
    a, b, c = rng.random(rows), rng.random(rows), rng.random(rows) * 5
    path.write_text("a,b,c,label\n" + "".join(f"{a[i]:.4f},{b[i]:.4f},{c[i]:.4f},{int(a[i] + b[i] > 1)}\n" for i in range(rows)))
    return np.stack([a, b, c], 1)


# -- 1: data.normalize: {mean, std} on in-memory data ------------------------------------------------
def test_given_statistics_are_applied_to_csv_data_and_recorded(tmp_path):
    base_csv(tmp_path / "base.csv")
    stats = {"mean": [0.5, 0.5, 2.5], "std": [0.3, 0.3, 1.7]}
    given = load(format="csv", path=str(tmp_path / "base.csv"), target="label", normalize=stats)
    plain = load(format="csv", path=str(tmp_path / "base.csv"), target="label", normalize="none")
    assert given.info.x_norm == {**stats, "per_channel": False}  # data_info.json: predict and export apply it
    expected = (plain.train.x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"])
    assert torch.allclose(given.train.x, expected, atol=1e-5)
    assert torch.allclose(given.test.x, (plain.test.x - torch.tensor(stats["mean"])) / torch.tensor(stats["std"]), atol=1e-5)


def test_given_statistics_per_channel_for_npz_images(tmp_path):
    x = np.random.default_rng(0).random((60, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(60) % 2)
    bundle = load(format="npz", path=str(tmp_path / "img.npz"), normalize={"mean": [0.5, 0.25], "std": [0.5, 0.25]})
    assert bundle.info.x_norm["per_channel"] is True
    assert float(bundle.train.x[:, 1].min()) >= -1.0 - 1e-5 and float(bundle.train.x[:, 1].max()) > 1.5  # (x - .25) / .25


def test_given_statistics_scale_only_the_numeric_columns_of_a_categorical_csv(tmp_path):
    rows = "".join(f"{i % 10},{['red', 'blue'][i % 2]},{i % 2}\n" for i in range(80))
    (tmp_path / "cat.csv").write_text("n,colour,label\n" + rows)
    bundle = load(format="csv", path=str(tmp_path / "cat.csv"), target="label", normalize={"mean": [5.0], "std": [2.0]})
    names = bundle.info.tabular["feature_names"]
    column = names.index("n")
    assert bundle.info.x_norm["mean"][column] == 5.0 and bundle.info.x_norm["std"][column] == 2.0
    assert sorted(set(bundle.info.x_norm["std"])) == [1.0, 2.0]  # the one-hot columns stay 0/1
    with pytest.raises(DataError, match=r"2 means and stds for the 1 numeric columns .*\(n\)"):
        load(format="csv", path=str(tmp_path / "cat.csv"), target="label", normalize={"mean": [5.0, 1.0], "std": [2.0, 1.0]})


def test_given_statistics_of_the_wrong_count_are_refused(tmp_path, capsys):
    base_csv(tmp_path / "base.csv")
    err = refused(tmp_path, capsys, f"{{format: csv, path: {tmp_path / 'base.csv'}, target: label, normalize: {{mean: [0.5], std: [0.3]}}}}")
    assert "data.normalize: 1 mean and std for" in err and "give 3, one per feature column" in err


# -- 2: task binary on more than 2 classes ------------------------------------------------------------
def test_binary_task_on_three_text_classes_is_refused(tmp_path, capsys):
    (tmp_path / "animals.csv").write_text("a,b,label\n" + "".join(f"{i % 7},{i % 5},{['cat', 'dog', 'fox'][i % 3]}\n" for i in range(60)))
    err = refused(tmp_path, capsys, f"{{format: csv, path: {tmp_path / 'animals.csv'}, target: label, task: binary}}")
    assert "task binary needs 2 classes, found 3 (cat, dog, fox)" in err and "data.task: classification" in err


def test_binary_task_with_num_classes_3_is_refused_by_validate(tmp_path, capsys):
    base_csv(tmp_path / "base.csv")
    err = refused(tmp_path, capsys, f"{{format: csv, path: {tmp_path / 'base.csv'}, target: label, task: binary, num_classes: 3}}",
                  command="validate")
    assert "task binary has 2 classes but num_classes is 3" in err


# -- 3: in-memory component samples that are not (x, y) pairs ------------------------------------------
@pytest.mark.parametrize(("component", "says"), [
    ("plain", "gave a Tensor of shape (120, 4); samples must be (x, y) pairs"),
    ("XOnly", "sample 0 of 'ufd_components:XOnly' is a Tensor; samples must be (x, y) pairs"),
    ("Triple", "is a 3-tuple; samples must be (x, y) pairs (multi-input samples"),
])
def test_component_samples_must_be_pairs(components, tmp_path, capsys, component, says):
    err = refused(tmp_path, capsys, f"{{component: 'ufd_components:{component}'}}")
    assert says in err
    if component == "Triple":
        assert "data.stream: true" in err


def test_component_giving_arrays_x_y_is_read_as_arrays(components):
    bundle = load(component="ufd_components:arrays")
    assert bundle.info.task == "classification" and bundle.info.input_shape == (4,) and bundle.info.num_classes == 2


# -- 4: held-out batches of Datasets and streams are checked --------------------------------------------
class Pairs(Dataset):
    def __init__(self, nan_at=None):
        self.nan_at = nan_at

    def __len__(self):
        return 20

    def __getitem__(self, i):
        x = torch.full((3,), float(i % 3))
        return (x * float("nan") if i == self.nan_at else x), i % 2


class Stream(IterableDataset):
    def __init__(self, nan_at=None):
        self.pairs = Pairs(nan_at)

    def __iter__(self):
        return (self.pairs[i] for i in range(len(self.pairs)))


def test_held_out_dataset_batches_are_checked_on_their_first_pass():
    check = batch_checker("classification", 2, where="validation split")
    loader = SampleLoader(Pairs(nan_at=13), 8, shuffle=False, check=check)
    with pytest.raises(DataError, match=r"^validation split: sample 13 contains NaN"):
        list(loader.eval_batches())
    stream = IterableLoader(Stream(nan_at=5), 4, check=check)
    with pytest.raises(DataError, match=r"^validation split: sample 5 contains NaN"):
        list(stream.eval_batches())


def test_a_clean_held_out_split_is_checked_once():
    calls = []
    for loader in (SampleLoader(Pairs(), 8, shuffle=False, check=lambda b, i: calls.append(list(i))),
                   IterableLoader(Stream(), 8, check=lambda b, i: calls.append(list(i)))):
        calls.clear()
        assert sum(len(y) for _, y in loader.eval_batches()) == 20
        assert [j for c in calls for j in c] == list(range(20))  # every sample named by its index
        list(loader.eval_batches())
        assert len(calls) == 3  # the second evaluation reads the same samples unchecked


def test_stream_component_validation_split_checked_as_build_eval_data_would(components, tmp_path):
    (tmp_path / "ufd_nan.py").write_text(textwrap.dedent('''
        import torch
        from torch.utils.data import Dataset

        class P(Dataset):
            def __len__(self):
                return 60

            def __getitem__(self, i):
                return torch.full((4,), float(i % 3)), i % 2

        class NanAt(P):
            def __getitem__(self, i):
                x, y = super().__getitem__(i)
                return (x * float("nan") if i == 3 else x), y

        def split():
            return {"train": P(), "val": NanAt()}
    '''))
    bundle = load(component="ufd_nan:split", stream=True)
    check = batch_checker(bundle.info.task, bundle.info.num_classes, where=f"{bundle.info.source} validation split")
    with pytest.raises(DataError, match="ufd_nan:split validation split: sample 3 contains NaN"):
        list(SampleLoader(bundle.val.dataset, 16, shuffle=False, check=check).eval_batches())


# -- 5: class ids given as a column (N, 1) -----------------------------------------------------------
@pytest.mark.parametrize("task", ["auto", "classification"])
def test_integer_column_targets_are_class_ids(tmp_path, task):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "col.npz", x=rng.random((90, 3)).astype(np.float32), y=(np.arange(90) % 3)[:, None])
    bundle = load(format="npz", path=str(tmp_path / "col.npz"), task=task)
    assert bundle.info.task == "classification" and bundle.info.num_classes == 3 and bundle.train.y.ndim == 1


# -- 6: an integer quantity taken as classes is said ---------------------------------------------------
def test_many_integer_values_taken_as_classes_say_so_once(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ints.npz", x=rng.random((300, 3)).astype(np.float32), y=np.arange(300) % 47)
    with pytest.warns(UserWarning) as said:
        bundle = load(format="npz", path=str(tmp_path / "ints.npz"))
    assert bundle.info.num_classes == 47
    assert len(said) == 1 and "47 distinct integer values were taken as classification with 47 classes" in str(said[0].message)
    assert "data.task: regression" in str(said[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(format="npz", path=str(tmp_path / "ints.npz"), task="classification")  # declared: nothing to say
        assert load(format="npz", path=str(tmp_path / "ints.npz"), task="regression").info.num_outputs == 1


# -- 7: normalization of image files ------------------------------------------------------------------
def test_transforms_normalize_is_refused_by_validate(tmp_path, capsys):
    err = refused(tmp_path, capsys, f"{{format: image_folder, path: {tmp_path}, image_size: 8, "
                  "transforms: {normalize: {mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]}}}", command="validate")
    assert "normalize is not a transform" in err and "data.normalize: {mean: [...], std: [...]}" in err


def test_image_normalize_channel_count_is_refused_by_validate(tmp_path, capsys):
    err = refused(tmp_path, capsys, f"{{format: image_folder, path: {tmp_path}, image_size: 8, normalize: {{mean: [0.5], std: [0.2]}}}}",
                  command="validate")
    assert "1 mean and std for images of 3 channels" in err


# -- 8: CSVs of image paths ---------------------------------------------------------------------------
@pytest.fixture
def images(tmp_path):
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((4, 4, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def test_image_csv_cells_are_stripped(images):
    (images / "l.csv").write_text("path , label\n" + "".join(f" {i}.png , {'ab'[i % 2]} \n" for i in range(6)))
    files, labels, names = read_image_csv(images / "l.csv", "label")
    assert names == ["a", "b"] and labels == [0, 1, 0, 1, 0, 1] and files[0] == images / "0.png"


@pytest.mark.parametrize(("body", "says"), [
    ("0.png,a\n1.png,b\n2.png\n", "row 2 (line 4) has 1 fields but the header has 2"),
    ("0.png,a\n1.png,b\n2.png, \n", "row 2 (line 4) has no label: column 'label' is empty"),
    ("0.png,a\n,b\n", "row 1 (line 3) has no file"),
    ("0.png,a\n1.png,a\n", "all 2 images are class 'a'; classification needs at least 2 classes"),
])
def test_image_csv_faults_are_one_line(images, body, says):
    (images / "l.csv").write_text("path,label\n" + body)
    with pytest.raises(DataError, match=f"^{images / 'l.csv'}: ") as caught:
        read_image_csv(images / "l.csv", "label")
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_image_csv_in_latin1_says_how_to_convert(images):
    (images / "l.csv").write_bytes("path,label\n0.png,caf\xe9\n1.png,th\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8.*iconv -f latin1 -t utf-8"):
        read_image_csv(images / "l.csv", "label")


# -- 9: text labels outside the CSV reader --------------------------------------------------------------
def test_npz_text_labels_become_classes(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.random.default_rng(0).random((60, 3)).astype(np.float32), y=np.array(["cat", "dog", "fox"] * 20))
    bundle = load(format="npz", path=str(tmp_path / "s.npz"))
    assert bundle.info.class_names == ["cat", "dog", "fox"] and bundle.info.num_classes == 3
    with pytest.raises(DataError, match=r"text labels \('cat', 'dog', 'fox'\) cannot be regression targets"):
        load(format="npz", path=str(tmp_path / "s.npz"), task="regression")


def test_component_text_labels_become_classes_or_are_refused_when_streamed(components):
    bundle = load(component="ufd_components:Words")
    assert bundle.info.class_names == ["cat", "dog"] and bundle.info.task == "classification"
    with pytest.raises(DataError, match=r"labels of 'ufd_components:word_splits' are text \('cat', \.\.\.\)"):
        load(component="ufd_components:word_splits", stream=True)


# -- 10: CSV options of the wrong kind ---------------------------------------------------------------
@pytest.mark.parametrize(("options", "says"), [
    ("{delimiter: ';;'}", "data.options.delimiter: must be one character"),
    ("{fill_missing: 'false'}", "data.options.fill_missing: expected true or false, got 'false'"),
])
def test_csv_options_refused_by_validate(tmp_path, capsys, options, says):
    base_csv(tmp_path / "base.csv")
    err = refused(tmp_path, capsys, f"{{format: csv, path: {tmp_path / 'base.csv'}, target: label, options: {options}}}", command="validate")
    assert says in err


# -- 11: a file where a folder is expected -------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["memmap", "image_folder"])
def test_a_file_given_for_a_folder_says_so(tmp_path, fmt):
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 2)), y=np.zeros(4))
    extra = {"image_size": 8} if fmt == "image_folder" else {}
    with pytest.raises(DataError, match=f"data.path: '{tmp_path / 'ok.npz'}' is a file; format {fmt} reads a folder"):
        load(format=fmt, path=str(tmp_path / "ok.npz"), **extra)


@pytest.mark.parametrize("bad, what", [("0.5,0.5,inf", "targets: row 20 (line 22) has a non-finite target"),
                                       ("0.5,inf,3", "features: row 20 (line 22) contains inf")])
def test_csv_errors_name_the_files_row_after_blank_lines(tmp_path, bad, what):
    from steepest.data.sources import read_csv
    from steepest.errors import DataError

    lines = [f"{i / 200},{i / 300},{i / 100}" for i in range(120)]
    lines[3:3] = ["", ""]  # two blank lines: the reader skips them, the message still counts the file's rows
    lines[20] = bad
    (tmp_path / "b.csv").write_text("a,b,y\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=what.replace("(", r"\(").replace(")", r"\)")):
        read_csv(tmp_path / "b.csv", "y")
