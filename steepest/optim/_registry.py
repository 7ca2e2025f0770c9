"""The optimizer registry: recipe name -> optimizer class + default hyperparameters.

Adding an optimizer is one file (the class) plus one `OPTIMIZERS.register(...)` row here.
Flags a record may carry:
  needs_create_graph  the Trainer must call backward(create_graph=True) (AdaHessian)
  wraps               the optimizer wraps an inner optimizer built from `base` (Lookahead)
"""

from __future__ import annotations

import torch

from steepest.registry import Registry

OPTIMIZERS = Registry("optimizer")

OPTIMIZERS.register("sgd", torch.optim.SGD, summary="Plain stochastic gradient descent.")
OPTIMIZERS.register(
    "momentum",
    torch.optim.SGD,
    defaults={"momentum": 0.9},
    summary="SGD with heavy-ball momentum (PyTorch form v = mu*v + g).",
)
OPTIMIZERS.register(
    "nesterov",
    torch.optim.SGD,
    defaults={"momentum": 0.9, "nesterov": True},
    summary="SGD with Nesterov momentum.",
)
OPTIMIZERS.register("adam", torch.optim.Adam, summary="Adam (Kingma & Ba 2015).")
OPTIMIZERS.register(
    "adamw",
    torch.optim.AdamW,
    defaults={"weight_decay": 0.01},
    summary="Adam with decoupled weight decay (Loshchilov & Hutter 2019).",
)
