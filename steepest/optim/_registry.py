"""The optimizer registry: recipe name -> optimizer class (or factory) + default hyperparameters.

Adding an optimizer is one file (the class) plus one `OPTIMIZERS.register(...)` row here; a row names
its class by import path, so this module imports none of them (and any of them may use the registry). Where
PyTorch ships the algorithm its class is registered directly (its fused/foreach kernels are used).
Flags a record may carry:
  needs_create_graph  the Trainer must call backward(create_graph=True) (AdaHessian)
  twin                the torch.optim class that computes the same update (tests compare against it)
"""

from __future__ import annotations

from steepest.registry import Registry

OPTIMIZERS = Registry("optimizer")

R = OPTIMIZERS.register
R("sgd", "torch.optim:SGD", summary="Plain stochastic gradient descent (torch.optim.SGD).")
R("momentum", "steepest.optim.momentum:momentum", defaults={"momentum": 0.9}, summary="Heavy-ball momentum: PyTorch form, or the EMA form with ema=True.")
R("nesterov", "torch.optim:SGD", defaults={"momentum": 0.9, "nesterov": True}, summary="SGD with Nesterov momentum (torch.optim.SGD).")
R("adagrad", "torch.optim:Adagrad", summary="AdaGrad (Duchi et al. 2011; torch.optim.Adagrad).")
R("rmsprop", "torch.optim:RMSprop", summary="RMSprop (Hinton 2012), centered option (torch.optim.RMSprop).")
R("adadelta", "torch.optim:Adadelta", summary="AdaDelta (Zeiler 2012; torch.optim.Adadelta).")
R("adam", "torch.optim:Adam", summary="Adam (Kingma & Ba 2015; torch.optim.Adam).")
R("amsgrad", "torch.optim:Adam", defaults={"amsgrad": True}, summary="AMSGrad (Reddi et al. 2018; torch.optim.Adam(amsgrad=True)).")
R("adamw", "torch.optim:AdamW", defaults={"weight_decay": 0.01}, summary="Adam with decoupled weight decay (Loshchilov & Hutter 2019).")
R("nadam", "steepest.optim.nadam:NAdam", twin="torch.optim:NAdam",
  summary="Adam with Nesterov momentum (Dozat 2016); torch.optim.NAdam's update, own foreach/compiled step.")
R("radam", "steepest.optim.radam:RAdam", twin="torch.optim:RAdam",
  summary="Rectified Adam (Liu et al. 2020); torch.optim.RAdam's update, own foreach/compiled step.")
R("lars", "steepest.optim.lars:LARS", summary="Layer-wise adaptive rate scaling with momentum (You et al. 2017).")
R("lamb", "steepest.optim.lamb:Lamb", summary="Layer-wise adaptive moments for large batches (You et al. 2020).")
R("lion", "steepest.optim.lion:Lion", summary="Sign momentum found by program search (Chen et al. 2023).")
R("lookahead", "steepest.optim.lookahead:lookahead", summary="k fast steps of any optimizer, then one slow step (Zhang et al. 2019).")
R("ranger", "steepest.optim.lookahead:ranger", summary="RAdam + Lookahead.")
R("rangerlars", "steepest.optim.lookahead:rangerlars", summary="RAdam + LARS trust ratio + Lookahead.")
R("novograd", "steepest.optim.novograd:NovoGrad", summary="Layer-wise normalized gradients and second moments (Ginsburg et al. 2019).")
R("adahessian", "steepest.optim.adahessian:AdaHessian", needs_create_graph=True, summary="Adam on a Hutchinson Hessian-diagonal estimate (Yao et al. 2021).")
R("muon", "steepest.optim.muon:MuonAdamW", summary="Newton-Schulz orthogonalized momentum for matrices, AdamW for the rest (torch.optim.Muon).")
