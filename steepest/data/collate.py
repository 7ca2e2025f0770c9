"""Dynamic padding: a batch of variable-length token sequences padded to its own longest sequence,
not to a fixed maximum, so a batch of short texts costs short-text compute (the Hugging Face
`DataCollatorWithPadding` idea, without a tokenizer object).

    >>> import torch
    >>> collate = pad_collate(pad_id=0)
    >>> batch = collate([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]], [[5, 6, 7], [8, -100, -100]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from steepest.errors import DataError

IGNORE_INDEX = -100  # the label cross entropy skips (torch's and Hugging Face's default)


def pad_collate(pad_id: int = 0, label_pad: int = IGNORE_INDEX, sequence_keys: Sequence[str] = ("input_ids", "labels", "attention_mask",
                "token_type_ids"), side: str = "right", multiple_of: int = 1) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """A `collate_fn` for dict samples of token sequences (lists or 1-d tensors of ids): each
    sequence key is padded to the longest in the batch (rounded up to `multiple_of`, e.g. 8 for
    tensor cores) with `pad_id` (`label_pad`, ignored by the loss, for "labels"; 0 for masks);
    an `attention_mask` (1 on tokens, 0 on padding) is added when the samples have none. Other
    keys are collated by torch's default rule (scalar labels of a classifier stack to (B,)).
    `side` "left" pads on the left (generation with decoder-only models). Output: int64 tensors
    (B, L). Errors: DataError when a sample is not a dict or a sequence key holds a non-sequence."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")

    def pad(rows: list[torch.Tensor], value: int, length: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=torch.int64)
        for i, row in enumerate(rows):
            if side == "right":
                out[i, : len(row)] = row
            else:
                out[i, length - len(row):] = row
        return out

    def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not samples or not all(isinstance(s, dict) for s in samples):
            raise DataError("pad_collate takes dict samples ({'input_ids': [...], 'labels': ...}); got "
                            f"{type(samples[0]).__name__ if samples else 'an empty batch'}")
        keys = [k for k in samples[0] if k in sequence_keys and _is_sequence(samples[0][k])]
        rows = {k: [torch.as_tensor(s[k], dtype=torch.int64).reshape(-1) for s in samples] for k in keys}
        if "input_ids" in rows and "attention_mask" not in rows:
            rows["attention_mask"] = [torch.ones(len(r), dtype=torch.int64) for r in rows["input_ids"]]
        longest = max(len(r) for rs in rows.values() for r in rs) if rows else 0
        length = -(-longest // multiple_of) * multiple_of
        batch = {k: pad(rs, label_pad if k == "labels" else 0 if k in ("attention_mask", "token_type_ids") else pad_id, length)
                 for k, rs in rows.items()}
        rest = [k for k in samples[0] if k not in batch]
        if rest:
            batch.update(default_collate([{k: s[k] for k in rest} for s in samples]))
        return batch

    return collate


def _is_sequence(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.ndim == 1
    return isinstance(value, (list, tuple))
