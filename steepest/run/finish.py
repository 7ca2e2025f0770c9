"""The end of a run: test-set evaluation, the final weights and summary.json."""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from safetensors.torch import save_file

from steepest.finetune.lora import has_lora, lora_state_dict, merged_state_dict
from steepest.training.checkpoint import atomic_write_bytes


def finish(run, started: float) -> dict[str, Any]:
    """Evaluate on the test split, write model.safetensors (LoRA merged into plain layers, the
    adapters apart) and summary.json on the main process; return the summary."""
    trainer = run.trainer
    test = trainer.evaluate("test") if len(run.data.test) else {}  # data.split may give the test split no share
    val = {k: v for k, v in trainer.state.metrics.items() if k.startswith("val_")}
    if not val and len(run.data.val):
        val = trainer.evaluate("val")
    info = run.data.info
    summary: dict[str, Any] = {
        "status": "completed",
        "task": info.task,
        "data": info.source,
        "steps": trainer.state.step,
        "epochs": trainer.state.epoch,
        "stop_reason": trainer.state.stop_reason,
        "nonfinite_steps": trainer.state.nonfinite_total,
        "wall_seconds": round(time.time() - started, 3),
        **val,
        **test,
    }
    full_state = trainer.model_state_dict() if trainer.sharded else None  # FSDP: every rank gathers
    if run.run_dir is not None and run.dist.rank == 0:
        model = trainer.unwrapped_model
        state = full_state or model.state_dict()
        if has_lora(model):  # ship plain layers (W0 + (alpha/r) B A) and the adapters apart
            save_file(_cpu(lora_state_dict(model)), str(run.run_dir / "lora_adapters.safetensors"))
            state = merged_state_dict(model)
        save_file(_cpu(state), str(run.run_dir / "model.safetensors"), metadata={"data_info": json.dumps(info.to_dict())})
        atomic_write_bytes(run.run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
