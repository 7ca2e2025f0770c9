"""A byte-level tokenizer: every UTF-8 byte is a token (no vocabulary to download), plus pad, bos, eos.

    >>> tok = ByteTokenizer()
    >>> ids = tok.encode("hé")
    >>> ids, tok.decode(ids)
    ([257, 104, 195, 169, 258], 'hé')
"""

from __future__ import annotations


class ByteTokenizer:
    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        return ([self.bos_id] if bos else []) + list(text.encode("utf-8")) + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")
