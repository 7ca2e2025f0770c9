"""Knowledge distillation (Hinton, Vinyals & Dean 2015)."""

from __future__ import annotations

import torch  # noqa: F401  (the examples use it)
import torch.nn.functional as F
from torch import Tensor


def kl_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """T^2 KL(softmax(t / T) || softmax(s / T)), averaged over the batch. The T^2 keeps the soft
    targets' gradients on the scale of a hard-label loss as T changes; add alpha * CE(s, y) for
    the hard labels. The teacher is not differentiated through (detach it upstream if it trains).

    >>> s = t = torch.tensor([[1.0, 2.0, 3.0]])
    >>> float(kl_distillation(s, t, temperature=4.0))
    0.0
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="none").sum(-1)
    return kl.mean() * (t * t)

