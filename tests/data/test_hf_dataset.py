"""Hugging Face `datasets` as a data source (steepest.data.hf): scikit-learn's digits written by the
test as a save_to_disk folder (64 numeric columns and a ClassLabel), a Parquet file (one list
column of 64 numbers) and a CSV file (64 columns), each trained through a recipe; one-line errors;
token-id columns as dict batches; the streaming wrapper in file order. Nothing is downloaded
(HF_DATASETS_OFFLINE, local files, the Arrow cache under tmp_path)."""

import json
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before datasets is imported (steepest.data.hf does the same)
datasets = pytest.importorskip("datasets")

import steepest  # noqa: E402
from steepest.cli import main  # noqa: E402
from steepest.config.schema import DataConfig  # noqa: E402
from steepest.data import load_data  # noqa: E402
from steepest.data.hf import HFStream, Targets, read_hf_dataset  # noqa: E402
from steepest.errors import DataError  # noqa: E402
from steepest.predict import Predictor  # noqa: E402


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """The 1797 digits three ways: {"saved": folder, "parquet": file, "csv": file, "cache": dir}."""
    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf_digits")
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    columns = {f"p{i}": x[:, i] for i in range(64)}
    saved = datasets.Dataset.from_dict({**columns, "label": y})
    saved = saved.cast_column("label", datasets.ClassLabel(names=[f"digit_{k}" for k in range(10)]))
    saved.save_to_disk(str(root / "saved"))
    datasets.Dataset.from_dict({"pixels": x.tolist(), "label": y}).to_parquet(str(root / "digits.parquet"))
    datasets.Dataset.from_dict({**columns, "label": y}).to_csv(str(root / "digits.csv"), index=False)
    return {"saved": root / "saved", "parquet": root / "digits.parquet", "csv": root / "digits.csv", "cache": root / "cache"}


RECIPE = """
data: {{format: hf_dataset, path: "{path}", target: label, batch_size: 128, split_seed: {seed}, options: {{cache_dir: "{cache}"}}}}
model: {{name: mlp, hidden: [128, 64], dropout: 0.1}}
optimizer: {{name: adamw, lr: 5.0e-3, weight_decay: 0.01}}
schedule: {{name: warmup_cosine, warmup_fraction: 0.05}}
loss: {{name: cross_entropy, label_smoothing: 0.05}}
trainer: {{max_epochs: 8, seed: {seed}}}
checkpoint: {{enabled: false}}
"""


def recipe_file(tmp_path, files, source, seed=0):
    path = tmp_path / f"{source}.yaml"
    path.write_text(RECIPE.format(path=files[source], cache=files["cache"], seed=seed))
    return path


def test_save_to_disk_folder_trains_through_the_cli(digits_files, tmp_path):
    assert main(["train", str(recipe_file(tmp_path, digits_files, "saved")), "--run-dir", str(tmp_path / "run"), "-q"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 80 steps of an MLP: val 0.963-0.974, test 0.944-0.982 over seeds 0, 1, 2 (1797 digits; 269 val, 270 test)
    assert summary["val_accuracy"] > 0.92 and summary["test_accuracy"] > 0.92, summary
    info = json.loads((tmp_path / "run" / "data_info.json").read_text())
    assert info["input_shape"] == [64] and info["num_classes"] == 10 and info["class_names"][3] == "digit_3"
    assert info["sizes"] == {"train": 1258, "val": 269, "test": 270} and len(info["x_norm"]["mean"]) == 64
    predictor = Predictor.load(tmp_path / "run")  # the recorded statistics standardize raw rows
    digits = load_digits()
    assert (predictor.predict(digits.data.astype(np.float32)) == digits.target).mean() > 0.95


@pytest.mark.parametrize("source", ["parquet", "csv"])
def test_data_files_train_through_the_api(digits_files, tmp_path, source):
    summary = steepest.train(str(recipe_file(tmp_path, digits_files, source)), run_dir=tmp_path / "run", console=False)
    assert summary["val_accuracy"] > 0.92 and summary["test_accuracy"] > 0.92, summary  # as above: the same rows and split


def test_splits_are_stratified_index_sets_over_the_memory_mapped_table(digits_files):
    data = load_data(DataConfig(format="hf_dataset", path=str(digits_files["saved"]), target="label"))
    split = data.train.dataset
    rows = np.concatenate([data.train.dataset.rows, data.val.dataset.rows, data.test.dataset.rows])
    assert sorted(rows.tolist()) == list(range(1797))
    assert split.table.cache_files  # memory-mapped from the folder's Arrow file, not held in memory
    batch = split.__getitems__([0, 5, 7])
    assert len(batch) == 3 and all(x.shape == (64,) and x.dtype == torch.float32 for x, _ in batch)
    x5, y5 = split[5]
    assert torch.equal(x5, batch[1][0]) and int(y5) == int(data.train.y[5])
    counts = np.bincount(data.val.y.numpy(), minlength=10)
    assert counts.min() >= 25 and counts.max() <= 29  # 269 samples stratified over 10 classes of ~180


def test_bad_inputs_are_one_line_data_errors(digits_files, tmp_path):
    def error(**kw):
        with pytest.raises(DataError) as caught:
            load_data(DataConfig(format="hf_dataset", **{"path": str(digits_files["saved"]), "target": "label", **kw}))
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "column 'labl' not in" in error(target="labl") and "did you mean 'label'" in error(target="labl")
    assert "column 'p99' not in" in error(options={"input_columns": ["p1", "p99"]})
    assert "does not exist" in error(path=str(tmp_path / "missing.parquet"))
    assert "no file matches" in error(path=str(tmp_path / "*.parquet"))
    words = datasets.Dataset.from_dict({"text": ["a", "b"] * 10, "n": list(range(20)), "label": [0, 1] * 10})
    words.save_to_disk(str(tmp_path / "words"))
    message = error(path=str(tmp_path / "words"))
    assert "input column 'text' holds Value('string'), not numbers" in message and "data.options.input_columns" in message
    (tmp_path / "x.dat").write_text("1,2\n")
    assert "file_format" in error(path=str(tmp_path / "x.dat"))
    assert main(["train", str(recipe_file(tmp_path, {**digits_files, "saved": tmp_path / "words"}, "saved")),
                 "--run-dir", str(tmp_path / "run"), "-q"]) == 2  # the CLI: one line, exit code 2


def test_without_the_extra_the_error_says_what_to_install(digits_files, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError, match=r"pip install 'steepest\[hf\]'"):
        load_data(DataConfig(format="hf_dataset", path=str(digits_files["saved"]), target="label"))


def test_token_id_columns_become_dict_batches_padded_to_max_length(tmp_path):
    ds = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7], [8, 9], [3]] * 10, "attention_mask": [[1, 1, 1], [1, 1], [1]] * 10,
                                     "label": ["neg", "pos", "pos"] * 10})
    ds.save_to_disk(str(tmp_path / "tok"))
    data = load_data(DataConfig(format="hf_dataset", path=str(tmp_path / "tok"), target="label", options={"pad_id": 1}))
    assert data.info.kind == "text" and data.info.input_shape == (3,) and data.info.class_names == ["neg", "pos"]
    batch = torch.utils.data.default_collate(data.train.dataset.__getitems__(list(range(len(data.train)))))
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["input_ids"].dtype == torch.int64
    short = batch["attention_mask"].sum(1) == 1  # the one-token rows: ids padded with pad_id, the mask with 0
    assert (batch["input_ids"][short, 1:] == 1).all() and (batch["attention_mask"][short, 1:] == 0).all()
    assert (batch["labels"][short] == 1).all()
    cut = load_data(DataConfig(format="hf_dataset", path=str(tmp_path / "tok"), target="label", options={"max_length": 2}))
    assert cut.train.dataset[0]["input_ids"].shape == (2,)


def test_stream_yields_every_row_once_in_file_order(tmp_path):
    for k in range(3):  # three shards, read in order
        rows = np.arange(k * 700, (k + 1) * 700)
        datasets.Dataset.from_dict({"i": rows, "v": np.stack([rows, -rows], 1).astype(np.float32).tolist(),
                                    "label": rows % 3}).to_parquet(str(tmp_path / f"part{k}.parquet"))
    source = read_hf_dataset(str(tmp_path / "part*.parquet"), "label", streaming=True)
    stream = HFStream(source, Targets("classification", 3))
    assert isinstance(stream, torch.utils.data.IterableDataset) and len(stream) == 2100  # from the Parquet footers
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        xs, ys = zip(*stream)
        assert torch.equal(torch.stack(xs), torch.tensor([[i, i, -i] for i in range(2100)], dtype=torch.float32))
        assert torch.equal(torch.stack(ys), torch.arange(2100) % 3)
    data = load_data(DataConfig(format="hf_dataset", path=str(tmp_path / "part*.parquet"), target="label", normalize="none",
                                options={"streaming": True}))
    parts = [[int(x[0]) for x, _ in split.dataset] for split in (data.train, data.val, data.test)]
    assert sorted(sum(parts, [])) == list(range(2100)) and all(p == sorted(p) for p in parts)  # dealt by position, in order
    assert [len(p) for p in parts] == [len(s.dataset) for s in (data.train, data.val, data.test)] and min(map(len, parts)) > 100


def test_a_streamed_csv_without_length_trains_for_its_step_budget_in_workers(digits_files, tmp_path):
    recipe = recipe_file(tmp_path, digits_files, "csv")
    summary = steepest.train(str(recipe), ["data.options.streaming=true", "data.num_workers=2", "trainer.max_epochs=null",
                                           "trainer.max_steps=120"], run_dir=tmp_path / "run", console=False)
    # the stream's rows go to train/val/test by a seeded table (no index access); 120 steps of batch 128
    assert summary["steps"] == 120 and summary["test_accuracy"] > 0.9, summary
