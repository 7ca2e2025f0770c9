"""The optimizer registry: recipe name -> optimizer class (or factory) + default hyperparameters.

Adding an optimizer is one file (the class) plus one `R(...)` row here (`OPTIMIZERS.register`, with
`adam_lr` declared); a row names its class by import path, so this module imports none of them (and
any of them may use the registry). Where PyTorch ships the algorithm its class is registered directly
(its fused/foreach kernels are used).
Flags a record carries:
  adam_lr             (every row: `R` requires it) True when the optimizer's learning rate is on Adam's
                      scale: its update is divided by a running second-moment estimate (per weight; per
                      layer for NovoGrad), so a step moves a weight by about lr (relative to its layer's
                      norm where a trust ratio rescales it: LAMB, RangerLARS), and an lr tuned for one
                      such optimizer (typically 1e-4..1e-2) suits another. False for the SGD family (a
                      step is lr x the gradient: the lr follows the loss's scale), LARS (lr x a trust
                      ratio, lr about 1), the methods with an lr scale of their own (Lion: sign steps, an
                      lr 3-10x below AdamW's; AdaDelta: a multiplier, 1.0; AdaHessian 0.15; Muon 0.02
                      for its matrices), AdaGrad and RMSprop (normalized, but torch's defaults are 1e-2
                      and AdaGrad's steps shrink as its sums grow), and lookahead (its base's scale).
                      `steepest search --procedure` keeps a recipe's lr when it tries another adam_lr
                      optimizer (steepest.tune.procedure.optimizer_candidates).
  needs_create_graph  the Trainer must call backward(create_graph=True) (AdaHessian)
  twin                the torch.optim class that computes the same update (tests compare against it)
"""

from __future__ import annotations

from typing import Any

from steepest.registry import Registry

OPTIMIZERS = Registry("optimizer")


def R(name: str, target: str, *, adam_lr: bool, **kwargs: Any) -> str:
    """One row; `adam_lr` (see above) must be declared for every optimizer."""
    return OPTIMIZERS.register(name, target, adam_lr=adam_lr, **kwargs)


R("sgd", "torch.optim:SGD", adam_lr=False, summary="Plain stochastic gradient descent (torch.optim.SGD).")
R("momentum", "steepest.optim.momentum:momentum", adam_lr=False, defaults={"momentum": 0.9}, summary="Heavy-ball momentum: PyTorch form, or the EMA form with ema=True.")
R("nesterov", "torch.optim:SGD", adam_lr=False, defaults={"momentum": 0.9, "nesterov": True}, summary="SGD with Nesterov momentum (torch.optim.SGD).")
R("adagrad", "torch.optim:Adagrad", adam_lr=False, summary="AdaGrad (Duchi et al. 2011; torch.optim.Adagrad).")
R("rmsprop", "torch.optim:RMSprop", adam_lr=False, summary="RMSprop (Hinton 2012), centered option (torch.optim.RMSprop).")
R("adadelta", "torch.optim:Adadelta", adam_lr=False, summary="AdaDelta (Zeiler 2012; torch.optim.Adadelta).")
R("adam", "torch.optim:Adam", adam_lr=True, summary="Adam (Kingma & Ba 2015; torch.optim.Adam).")
R("amsgrad", "torch.optim:Adam", adam_lr=True, defaults={"amsgrad": True}, summary="AMSGrad (Reddi et al. 2018; torch.optim.Adam(amsgrad=True)).")
R("adamw", "torch.optim:AdamW", adam_lr=True, defaults={"weight_decay": 0.01}, summary="Adam with decoupled weight decay (Loshchilov & Hutter 2019).")
R("nadam", "steepest.optim.nadam:NAdam", adam_lr=True, twin="torch.optim:NAdam",
  summary="Adam with Nesterov momentum (Dozat 2016); torch.optim.NAdam's update, own foreach/compiled step.")
R("radam", "steepest.optim.radam:RAdam", adam_lr=True, twin="torch.optim:RAdam",
  summary="Rectified Adam (Liu et al. 2020); torch.optim.RAdam's update, own foreach/compiled step.")
R("lars", "steepest.optim.lars:LARS", adam_lr=False, summary="Layer-wise adaptive rate scaling with momentum (You et al. 2017).")
R("lamb", "steepest.optim.lamb:Lamb", adam_lr=True, summary="Layer-wise adaptive moments for large batches (You et al. 2020).")
R("lion", "steepest.optim.lion:Lion", adam_lr=False, summary="Sign momentum found by program search (Chen et al. 2023).")
R("lookahead", "steepest.optim.lookahead:lookahead", adam_lr=False, summary="k fast steps of any optimizer, then one slow step (Zhang et al. 2019).")
R("ranger", "steepest.optim.lookahead:ranger", adam_lr=True, summary="RAdam + Lookahead.")
R("rangerlars", "steepest.optim.lookahead:rangerlars", adam_lr=True, summary="RAdam + LARS trust ratio + Lookahead.")
R("novograd", "steepest.optim.novograd:NovoGrad", adam_lr=True, summary="Layer-wise normalized gradients and second moments (Ginsburg et al. 2019).")
R("adahessian", "steepest.optim.adahessian:AdaHessian", adam_lr=False, needs_create_graph=True, summary="Adam on a Hutchinson Hessian-diagonal estimate (Yao et al. 2021).")
R("muon", "steepest.optim.muon:MuonAdamW", adam_lr=False, summary="Newton-Schulz orthogonalized momentum for matrices, AdamW for the rest (torch.optim.Muon).")
