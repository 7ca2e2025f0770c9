"""fastai's tabular model: an embedding per categorical column, the continuous columns through
BatchNorm, then an MLP (Howard & Gugger, "Fastai: A Layered API for Deep Learning", 2020,
`fastai.tabular.model.TabularModel`; entity embeddings: Guo & Berkhahn, "Entity Embeddings of
Categorical Variables", 2016).

The model takes the (N, F) float features every tabular model gets: a CSV read with
`data.options.categorical_encoding: index` holds one column per categorical, the category's index
0..K as a float (0 = `#na#`: a missing cell or a category the training rows never held), next to
the standardized numbers and the 0/1 missing-indicator columns (steepest.data.tabular). Which
columns are indices, and each one's K + 1, come from the run's encoder (`DataInfo.tabular`),
handed to the model by `build_model` as `tabular`:

    x_cat  (N, C) = x[:, index columns] as integers;    x_cont (N, F - C) = the other columns
    h = [dropout_embed_p(E_1[x_cat_1], ..., E_C[x_cat_C]),  BatchNorm1d(x_cont)]      (N, sum d_i + F - C)
    h = [Linear(bias=False) -> ReLU -> BatchNorm1d -> Dropout(p_l)] for each width in `layers`
    out = Linear(h)                                                                     (N, num_outputs)

E_i is an `nn.Embedding(n_i, d_i)` with n_i = K_i + 1 rows and, unless `embedding_sizes` names the
column, fastai's rule d_i = emb_sz_rule(n_i) = min(600, round(1.6 * n_i ** 0.56)); its rows start
from N(0, 0.01²) truncated at ±0.02, as fastai's `Embedding` (trunc_normal_, std 0.01). As in
fastai, a Linear followed by BatchNorm has no bias (so `model.init.relu_bias` applies only with
`use_bn: false`).

Without categorical columns (a numeric CSV, a scikit-learn set, or no `tabular` given) every
column is continuous: an MLP with BatchNorm on its inputs. A CSV whose categorical columns were
one-hot encoded (the default) is refused with a ValueError (a one-line ConfigError from a recipe)
naming the fix, `data.options.categorical_encoding: index`: the embeddings are the point of this
model, and silently training an MLP on the one-hot columns would hide that they are not used.

    >>> import numpy as np, torch
    >>> from steepest.data.tabular import TabularEncoder
    >>> rows = np.array([["red", 1.0], ["blue", 2.0], ["red", 3.0]], dtype=object)
    >>> enc = TabularEncoder.fit(rows, ["color", "age"], categorical=["color"], encoding="index")
    >>> model = TabularModel((2,), 3, tabular=enc.to_dict(), layers=[8])
    >>> [tuple(e.weight.shape) for e in model.embeds]   # K + 1 = 3 rows (#na#, blue, red), d = round(1.6 * 3 ** 0.56)
    [(3, 3)]
    >>> model.eval()(torch.tensor(enc.transform(rows), dtype=torch.float32)).shape
    torch.Size([3, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from steepest.data.tabular import TabularEncoder


def emb_sz_rule(n: int) -> int:
    """fastai's embedding width for a column of `n` categories (`#na#` included): min(600, round(1.6 n^0.56))."""
    return min(600, round(1.6 * n**0.56))


class TabularModel(nn.Module):
    """Entity embeddings + BatchNorm'd continuous columns + MLP; see the module docstring.

    `input_shape`: (F,) feature columns; `num_outputs`: logits or regression outputs;
    `tabular`: the run's `TabularEncoder` (or its `to_dict()`, as in data_info.json), None for
    all-continuous inputs; `embedding_sizes`: {column: d} overriding fastai's rule per column;
    `layers`: hidden widths; `ps`: dropout after each hidden layer (one value for all, or one per
    layer); `embed_p`: dropout on the concatenated embeddings; `bn_cont`: BatchNorm1d on the
    continuous columns; `use_bn`: BatchNorm1d after each hidden layer's ReLU.

    forward: x (N, F) float32 -> (N, num_outputs). In eval mode an index outside [0, K] raises an
    IndexError naming the column (the encoder never writes one: unseen categories are 0); in
    training the check is skipped (it would cost a host sync per step).

    ValueError: input_shape not (F,), a `tabular` of another width, one-hot categorical columns,
    an `embedding_sizes` key that is not a categorical column, a size < 1, dropout outside [0, 1).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        tabular: dict[str, Any] | None = None,
        embedding_sizes: dict[str, int] | None = None,
        layers: list[int] = (200, 100),  # type: ignore[assignment]
        ps: float | list[float] = 0.0,
        embed_p: float = 0.0,
        bn_cont: bool = True,
        use_bn: bool = True,
    ):
        super().__init__()
        if len(input_shape) != 1:
            raise ValueError(f"the tabular model takes rows of features (F,), got input_shape {tuple(input_shape)}")
        width = int(input_shape[0])
        names, positions, cardinalities = _categorical_columns(tabular, width)
        sizes = dict(embedding_sizes or {})
        unknown = sorted(set(sizes) - set(names))
        if unknown:
            raise ValueError(f"embedding_sizes: {', '.join(map(repr, unknown))} not a categorical column; "
                             f"they are: {', '.join(names) or '(none)'}")
        dims = [int(sizes.get(name, emb_sz_rule(n))) for name, n in zip(names, cardinalities)]
        if any(d < 1 for d in dims):
            raise ValueError(f"embedding_sizes: every size must be >= 1, got {sizes}")
        hidden = [int(h) for h in layers]
        drops = [float(ps)] * len(hidden) if isinstance(ps, (int, float)) else [float(p) for p in ps]
        if len(drops) != len(hidden):
            raise ValueError(f"ps: one dropout per hidden layer ({len(hidden)}), got {len(drops)}")
        if not all(0 <= p < 1 for p in [*drops, embed_p]):
            raise ValueError(f"ps and embed_p must be in [0, 1), got ps={ps}, embed_p={embed_p}")

        self.column_names = tuple(names)
        continuous = [j for j in range(width) if j not in set(positions)]
        self.register_buffer("cat_index", torch.tensor(positions, dtype=torch.long), persistent=False)
        self.register_buffer("cont_index", torch.tensor(continuous, dtype=torch.long), persistent=False)
        self.register_buffer("cardinalities", torch.tensor(cardinalities, dtype=torch.long), persistent=False)
        self.embeds = nn.ModuleList(nn.Embedding(n, d) for n, d in zip(cardinalities, dims))
        for e in self.embeds:  # fastai's Embedding: trunc_normal_(std=0.01)
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)
        self.emb_drop = nn.Dropout(embed_p)
        self.bn_cont = nn.BatchNorm1d(len(continuous)) if bn_cont and continuous else None
        blocks: list[nn.Module] = []
        size = sum(dims) + len(continuous)
        for h, p in zip(hidden, drops):
            blocks += [nn.Linear(size, h, bias=not use_bn), nn.ReLU()]
            blocks += [nn.BatchNorm1d(h)] if use_bn else []
            blocks += [nn.Dropout(p)] if p > 0 else []
            size = h
        blocks.append(nn.Linear(size, int(num_outputs)))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        parts = []
        if len(self.embeds):
            idx = x.index_select(1, self.cat_index).long()
            if not self.training:
                self._check_indices(idx)
            parts.append(self.emb_drop(torch.cat([e(idx[:, i]) for i, e in enumerate(self.embeds)], dim=1)))
        if self.cont_index.numel():
            cont = x.index_select(1, self.cont_index)
            parts.append(self.bn_cont(cont) if self.bn_cont is not None else cont)
        return self.layers(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    def _check_indices(self, idx: Tensor) -> None:
        """IndexError naming the first column with an index outside [0, K] (one host sync)."""
        bad = ((idx < 0) | (idx >= self.cardinalities)).any(0)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise IndexError(f"categorical column '{self.column_names[i]}' holds an index outside [0, "
                             f"{int(self.cardinalities[i]) - 1}]; encode raw rows with the run's TabularEncoder "
                             "(steepest.predict.Predictor does), where an unseen category is 0")


def _categorical_columns(tabular: dict[str, Any] | TabularEncoder | None, width: int) -> tuple[list[str], list[int], list[int]]:
    """(names, positions in the feature row, K + 1 each) of the index columns of `tabular`."""
    if tabular is None:
        return [], [], []
    enc = tabular if isinstance(tabular, TabularEncoder) else TabularEncoder.from_dict(tabular)
    if enc.width != width:
        raise ValueError(f"tabular: the encoder writes {enc.width} columns, the inputs have {width}")
    names = [n for n in enc.columns if n in enc.categories]
    if names and enc.encoding != "index":
        raise ValueError(f"the categorical columns ({', '.join(names[:5])}) are one-hot encoded; "
                         "set data.options.categorical_encoding: index for their embeddings")
    return names, enc.index_columns, enc.cardinalities

