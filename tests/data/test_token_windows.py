"""Token files (steepest.data.tokens, steepest.data.corpus): a corpus tokenized once into one
memory-mapped row of ids, read as windows of block_size + 1 tokens; the splits are consecutive
stretches of the stream; a recipe's bare name is found where data sets live."""

import json
import pickle

import numpy as np
import pytest
import torch

from steepest.data.corpus import encode_documents, main, prepare_token_file, read_corpus
from steepest.data.tokens import (
    META_FILE,
    TokenWindows,
    find_token_file,
    open_tokens,
    read_token_meta,
    token_windows,
    write_token_file,
)
from steepest.errors import DataError


def stream(tmp_path, n=1000, vocab=50, name="toks"):
    """A token file whose ids are their positions mod `vocab` (one document): windows are easy to check."""
    return write_token_file(tmp_path / name, [list(np.arange(n - 1) % vocab)], vocab_size=vocab, separator=vocab - 1)


def test_a_token_file_holds_the_documents_each_after_a_separator_and_says_what_wrote_it(tmp_path):
    path = write_token_file(tmp_path, [[3, 4], [], [5]], vocab_size=10, separator=9, meta={"tokenizer": "toy"})
    assert path.name == "tokens.npy" and np.load(path).tolist() == [9, 3, 4, 9, 9, 5]
    assert open_tokens(path).dtype == np.uint16 and isinstance(open_tokens(path), np.memmap)
    meta = read_token_meta(path)
    assert meta == {"tokenizer": "toy", "vocab_size": 10, "separator": 9, "dtype": "uint16", "documents": 3, "tokens": 6}
    assert np.load(write_token_file(tmp_path / "big", [[70_000]], vocab_size=100_000, separator=0)).dtype == np.int32
    with pytest.raises(ValueError, match="token id 10 is outside"):
        write_token_file(tmp_path / "bad", [[10]], vocab_size=10, separator=0)


def test_windows_are_inputs_and_their_next_tokens(tmp_path):
    path = stream(tmp_path)
    windows = TokenWindows(path, block_size=8, starts=np.array([0, 100, 991]))
    x, y = windows[1]
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (8,)
    assert torch.equal(x, torch.arange(99, 107) % 50) and torch.equal(y, torch.arange(100, 108) % 50)  # position 0 is the separator
    batch = windows.__getitems__([2, 0])  # one gather, in the order asked
    assert all(torch.equal(a, b) for got, want in zip(batch, [windows[2], windows[0]]) for a, b in zip(got, want))
    assert windows.targets.shape == (3, 8) and np.array_equal(windows.targets[1], y.numpy())
    clone = pickle.loads(pickle.dumps(windows))  # what a DataLoader worker receives: the path, never the mapped data
    assert windows._tokens is not None and clone._tokens is None and torch.equal(clone[1][0], x)
    with pytest.raises(DataError, match="runs past the file's 1000 tokens"):
        TokenWindows(path, block_size=8, starts=np.array([992]))


def test_splits_are_consecutive_stretches_train_windows_random_held_out_tiled(tmp_path):
    path = stream(tmp_path, n=10_000)
    parts = token_windows(str(path), block_size=16, val_fraction=0.1, test_fraction=0.05, seed=3)
    train, val, test = parts["train"], parts["val"], parts["test"]
    assert len(train) == 8500 // 16 and train.starts.min() >= 0 and train.starts.max() + 16 < 8500
    assert len(np.unique(train.starts)) > 0.9 * len(train) and not np.array_equal(np.sort(train.starts), train.starts)
    assert np.array_equal(val.starts, np.arange(8500, 9500 - 16, 16)) and test.starts[0] == 9500 and test.starts[-1] + 16 < 10_000
    again = token_windows(str(path), block_size=16, val_fraction=0.1, test_fraction=0.05, seed=3)
    assert np.array_equal(again["train"].starts, train.starts)  # drawn once from the seed
    assert not np.array_equal(token_windows(str(path), block_size=16, seed=4)["train"].starts, train.starts)
    capped = token_windows(str(path.parent), block_size=16, windows=7, eval_windows=2, test_fraction=0)
    assert (len(capped["train"]), len(capped["val"])) == (7, 2) and "test" not in capped


def test_a_bare_name_is_found_where_data_sets_live_and_errors_say_how_to_make_one(tmp_path, monkeypatch):
    stream(tmp_path, name="my_corpus-bytes")
    monkeypatch.setenv("STEEPEST_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert find_token_file("my_corpus-bytes") == tmp_path / "my_corpus-bytes" / "tokens.npy"
    with pytest.raises(DataError, match="python -m steepest.data.corpus"):
        find_token_file("nothing-here")
    with pytest.raises(DataError, match="the val split holds 50 tokens, too few for one window of 65"):
        token_windows("my_corpus-bytes", block_size=64, val_fraction=0.05, test_fraction=0.05)
    with pytest.raises(DataError, match="block_size must be a positive whole number"):
        token_windows("my_corpus-bytes", block_size=0)


def test_a_folder_of_text_files_tokenized_with_bytes(tmp_path, capsys):
    corpus = tmp_path / "texts"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("hé")
    (corpus / "sub" / "b.md").write_text("ok")
    (corpus / "skip.bin").write_bytes(b"\x00")
    assert read_corpus(str(corpus)) == ["hé", "ok"]
    docs, vocab, separator = encode_documents(["hé"], "bytes")
    assert docs == [[104, 195, 169]] and (vocab, separator) == (259, 258)
    path = prepare_token_file(str(corpus), "bytes", tmp_path / "out", seed=0)
    tokens = np.load(path).tolist()
    assert sorted([tokens[:4], tokens[4:]]) == sorted([[258, 104, 195, 169], [258, 111, 107]])  # documents shuffled, each after eos
    assert json.loads((path.parent / META_FILE).read_text())["tokenizer"] == "bytes"
    assert main(["--corpus", str(corpus), "--tokenizer", "bytes", "--out", str(tmp_path / "cli")]) == 0
    assert "7 tokens (uint16" in capsys.readouterr().out
    assert main(["--corpus", str(tmp_path / "missing"), "--tokenizer", "bytes"]) == 2
    assert "neither bbc_news nor an existing text file" in capsys.readouterr().err
