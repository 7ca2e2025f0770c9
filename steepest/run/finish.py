"""The end of a run: test-set evaluation, the final weights and summary.json."""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from safetensors.torch import save as st_save

from steepest.data.containers import split_size
from steepest.finetune.lora import has_lora, lora_state_dict, merged_state_dict
from steepest.training.callbacks import EarlyStopping
from steepest.training.checkpoint import atomic_write_bytes


def finish(run, started: float) -> dict[str, Any]:
    """Evaluate on the test split, write model.safetensors (LoRA merged into plain layers, the
    adapters apart) and summary.json on the main process; return the summary."""
    trainer = run.trainer
    restore_best_weights(trainer)  # a run that used its whole budget ships its best evaluated weights too
    test = trainer.evaluate("test") if split_size(run.data.test) != 0 else {}  # data.split may give the test split no share
    val = final_val_metrics(trainer, split_size(run.data.val) != 0)
    info = run.data.info
    summary: dict[str, Any] = {
        "status": "completed",
        "task": info.task,
        "data": info.source,
        "steps": trainer.state.step,
        "epochs": trainer.state.epoch,
        "stop_reason": trainer.state.stop_reason,
        "nonfinite_steps": trainer.state.nonfinite_total,
        **parameter_counts(trainer.unwrapped_model),
        "wall_seconds": round(time.time() - started, 3),
        **val,
        **test,
    }
    full_state = trainer.model_state_dict() if trainer.sharded else None  # FSDP: every rank gathers
    if run.run_dir is not None and run.dist.rank == 0:
        model = trainer.unwrapped_model
        state = full_state or model.state_dict()
        if has_lora(model):  # ship plain layers (W0 + (alpha/r) B A) and the adapters apart
            atomic_write_bytes(run.run_dir / "lora_adapters.safetensors", st_save(_cpu(lora_state_dict(model))))
            state = merged_state_dict(model)
        weights = st_save(_cpu(state), metadata={"data_info": json.dumps(info.to_dict())})
        atomic_write_bytes(run.run_dir / "model.safetensors", weights)  # atomic, with the user's umask like every run file
        atomic_write_bytes(run.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def final_val_metrics(trainer, has_val: bool) -> dict[str, float]:
    """The val_* metrics of the weights the run ends with. Evaluated again where the last evaluation was of other
    weights: restored best weights (quietly: logged already, at the step they were evaluated), or steps taken
    since (a budget or a stop that does not fall on an evaluation; logged at the last step)."""
    val = {k: v for k, v in trainer.state.metrics.items() if k.startswith("val_")}
    if not has_val:
        return val
    if "restored the weights" in trainer.state.stop_reason:
        return trainer.evaluate("val", log=False)
    last = trainer.evaluated_at.get("val", trainer.state.step if val else None)  # none in this process: the state's (a resumed run's)
    if last != trainer.state.step:
        return trainer.evaluate("val")
    return val


def restore_best_weights(trainer) -> bool:
    """Every EarlyStopping callback with `restore_best` puts back its best weights (after the last
    checkpoint: see EarlyStopping.restore); whether any did."""
    return any([cb.restore(trainer) for cb in trainer.callbacks if isinstance(cb, EarlyStopping)])


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    """Total and trainable parameters, and the parameters of each top-level module (for the report)."""
    per_module = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "parameters_per_module": {k: v for k, v in per_module.items() if v}}
