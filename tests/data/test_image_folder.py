"""An image folder written by the test (scikit-learn's digits as RGB PNG files, upscaled, one
folder per class) trains through a recipe with per-sample augmentation in 2 DataLoader workers."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import load_data


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_png")
    digits = load_digits()
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(digits.images))[:900]:
        image, label = digits.images[i], digits.target[i]
        gray = (image / 16 * 255).astype(np.uint8)
        rgb = np.stack([gray, (gray * 0.8).astype(np.uint8), 255 - gray], axis=-1)  # colour, so RGB matters
        folder = root / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(rgb).resize((24, 24), Image.BILINEAR).save(folder / f"{i}.png")
    return root


RECIPE = """
data:
  format: image_folder
  path: {path}
  image_size: 16
  num_workers: 2
  persistent_workers: true
  batch_size: 32
  transforms: {{random_resized_crop: {{scale: [0.8, 1.0], ratio: [0.9, 1.1]}}, rotate_degrees: 5}}
model: {{name: cnn, channels: [16, 32]}}
optimizer: {{name: adamw, lr: 5.0e-3}}
schedule: {{name: cosine}}
trainer: {{max_epochs: 12, seed: 0}}
checkpoint: {{enabled: false}}
"""


def test_image_folder_recipe_trains_with_per_sample_augmentation_in_workers(digit_folder, tmp_path, capsys):
    recipe = tmp_path / "images.yaml"
    recipe.write_text(RECIPE.format(path=digit_folder))
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 135 test images of 900, 10 classes (chance 0.1). At a constant lr 5e-3 the last steps decided where
    # it ended: trainer seeds 0-4 gave 0.800-0.956 (3 of 5 below 0.85); annealed by the cosine schedule
    # (same 240 steps), seeds 0-4: 0.889-0.933 (mean 0.913)
    assert summary["test_accuracy"] >= 0.85, summary
    info = json.loads((tmp_path / "run" / "data_info.json").read_text())
    assert info["input_shape"] == [3, 16, 16] and info["num_classes"] == 10 and len(info["images"]["mean"]) == 3


def test_image_splits_are_datasets_with_fitted_statistics(digit_folder, tmp_path):
    recipe_file = tmp_path / "images.yaml"
    recipe_file.write_text(RECIPE.format(path=digit_folder))
    data = load_data(load_recipe(str(recipe_file)).data)
    assert len(data.train) + len(data.val) + len(data.test) == 900
    x, y = data.val.dataset[0]
    assert tuple(x.shape) == (3, 16, 16) and 0 <= int(y) < 10
    mean, std = data.info.images["mean"], data.info.images["std"]
    assert all(0 < m < 1 for m in mean) and all(s > 0 for s in std)


def test_image_folder_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(path=tmp_path / "only"))
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "-q"]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    recipe.write_text(RECIPE.format(path=tmp_path / "only").replace("rotate_degrees: 5", "rotate_degree: 5"))
    assert main(["validate", str(recipe)]) == 2
    assert "rotate_degree" in capsys.readouterr().err


def test_doctor_runs_on_image_files_through_the_training_pipeline(digit_folder, tmp_path):
    from steepest.diagnose.doctor import run_doctor

    recipe_file = tmp_path / "images.yaml"
    recipe_file.write_text(RECIPE.format(path=digit_folder).replace("num_workers: 2", "num_workers: 0"))
    report = run_doctor(str(recipe_file), ["forward_shape", "duplicates", "preprocessing", "initial_loss"])
    verdicts = {name: report[name].verdict for name in ("forward_shape", "duplicates", "preprocessing", "initial_loss")}
    assert verdicts["forward_shape"] == "ok" and verdicts["initial_loss"] == "ok", verdicts
    assert all(v != "error" for v in verdicts.values()), verdicts
