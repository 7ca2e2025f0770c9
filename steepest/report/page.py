"""The HTML page: one self-contained file (inline CSS, images as `data:` URIs, no script, no
request at view time) for one run, or several runs overlaid with the diff of their recipes."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from typing import Any

from steepest.config.yaml_io import dump_yaml
from steepest.report import figures
from steepest.report.predictions import TestView
from steepest.report.run_files import RunFiles

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; font-size: 13px; }
th { background: #f4f4f4; } img { max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f7f7f7; padding: 0.8em; overflow: auto; font-size: 12px; max-height: 28em; }
.muted { color: #777; } .ok { color: #1a7f37; } .warn { color: #9a6700; } .fail { color: #cf222e; }
"""

LOSS_KEYS = ("train_loss", "val_loss")


def _esc(value: Any) -> str:
    if isinstance(value, float):
        return html.escape(f"{value:.4g}") if math.isfinite(value) else html.escape(str(value))
    return html.escape(str(value))


def table(rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}" class="plot">'


def _marks(run: RunFiles) -> dict[str, int]:
    marks = {}
    if run.best_step is not None:
        marks["best checkpoint"] = run.best_step
    reason = str(run.summary.get("stop_reason", ""))
    if reason.startswith("early stopping") and "steps" in run.summary:
        marks["early stop"] = int(run.summary["steps"])
    return marks


def _group(series: dict[str, list], prefix: str) -> dict[str, list]:
    return {k: v for k, v in series.items() if k == prefix or k.startswith(prefix + "/")}


def run_sections(run: RunFiles, view: TestView | None, view_error: str | None) -> list[str]:
    s, out = run.series, []
    metric_keys = sorted(k for k in s if k.startswith("val_") and k != "val_loss")
    info = run.run_info
    out.append(f"<h1>{_esc(run.config.get('name') or run.name)} <span class='muted'>{_esc(run.path)}</span></h1>")
    out.extend(f"<p class='muted'>{_esc(note)}</p>" for note in run.notes)
    meta = {"status": run.status, "stop": run.summary.get("stop_reason", "-"),
            "started": info.get("started", "-"), "device": info.get("device", "-"),
            "versions": f"steepest {info.get('steepest', '?')}, torch {info.get('torch', '?')}, Python {info.get('python', '?')}",
            "git": (info.get("git") or {}).get("commit", "-")}
    out.append(table([meta]))
    metrics = {k: v for k, v in run.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out.append("<h2>Results</h2>" + table([metrics]))
    out.append("<h2>Learning curves</h2>")
    out.append(figure(figures.curves([("loss", {k: s.get(k, []) for k in LOSS_KEYS}),
                                      ("validation metrics", {k: s[k] for k in metric_keys})], _marks(run)), "learning curves"))
    hyper = {**_group(s, "lr"), **{k: s[k] for k in ("momentum", "beta1", "weight_decay") if k in s}}
    out.append("<h2>Scheduled hyperparameters</h2>")
    out.append(figure(figures.curves([("learning rate", _group(s, "lr")),
                                      ("momentum / weight decay", {k: v for k, v in hyper.items() if not k.startswith("lr")})]),
                      "hyperparameters"))
    out.append("<h2>Gradients and updates</h2>")
    out.append(figure(figures.curves([("gradient norm", {k: s[k] for k in ("grad_norm", "grad_norm_clipped") if k in s}),
                                      ("update / weight ratio", _group(s, "update_ratio"))]), "gradients"))
    out.append("<h2>Throughput and memory</h2>")
    out.append(figure(figures.curves([("samples / s", {k: s[k] for k in ("samples_per_s", "tokens_per_s") if k in s}),
                                      ("memory (MB)", {k: s[k] for k in ("memory_mb",) if k in s}),
                                      ("epoch seconds", {k: s[k] for k in ("epoch_seconds",) if k in s})], width=3.8), "throughput"))
    out += data_sections(run)
    out += test_sections(view, view_error)
    out += extras_sections(run)
    out.append("<h2>Recipe</h2><pre>" + _esc(dump_yaml(run.config)) + "</pre>")
    return out


def data_sections(run: RunFiles) -> list[str]:
    d = run.data_info
    if not d:
        return []
    row = {"source": d.get("source"), "task": d.get("task"), "kind": d.get("kind"), "input shape": d.get("input_shape"),
           "classes": d.get("num_classes") or "-", **{f"{k} samples": v for k, v in (d.get("sizes") or {}).items()}}
    out = ["<h2>Data</h2>" + table([row])]
    params = {k: run.summary[k] for k in ("parameters", "trainable_parameters") if k in run.summary}
    modules = run.summary.get("parameters_per_module")
    if params or modules:
        out.append("<h2>Model</h2>" + table([params]) + (table([{"module": k, "parameters": v} for k, v in modules.items()]) if modules else ""))
    return out


def test_sections(view: TestView | None, error: str | None) -> list[str]:
    if view is None:
        return [f"<h2>Test split</h2><p class='muted'>not shown: {_esc(error or 'no finished model')}</p>"]
    out = ["<h2>Test split</h2>"]
    if view.confusion is not None:
        out.append(figure(figures.confusion(view.confusion, view.class_names), "confusion matrix"))
    if view.true is not None:
        out.append(figure(figures.residuals(view.true, view.predicted), "residuals"))
    if view.wrong_images is not None and len(view.wrong_images):
        out.append("<h3>Most confidently wrong</h3>" + figure(figures.image_grid(view.wrong_images, view.wrong_titles), "wrong samples"))
    elif view.wrong_rows:
        out.append("<h3>Most confidently wrong</h3>" + table(view.wrong_rows))
    if view.augmented is not None:
        titles = [""] * len(view.augmented)
        out.append("<h2>Training samples after augmentation</h2>" + figure(figures.image_grid(view.augmented, titles), "augmented samples"))
    return out


def extras_sections(run: RunFiles) -> list[str]:
    out = []
    doctor = run.extras.get("doctor")
    if isinstance(doctor, list):
        rows = [{"check": r.get("name"), "verdict": r.get("verdict"), "finding": r.get("summary"), "fix": r.get("fix", "")}
                for r in doctor if isinstance(r, dict)]
        out.append("<h2>Doctor</h2>" + table(rows))
    for name, title in (("sharpness", "Sharpness"), ("batch_size", "Gradient noise scale")):
        found = run.extras.get(name)
        if isinstance(found, dict):
            out.append(f"<h2>{title}</h2>" + table([found]))
    return out


def compare_sections(runs: list[RunFiles], diff: list[tuple[str, Any, Any]]) -> list[str]:
    out = [f"<h1>{len(runs)} runs</h1>"]
    rows = [{"run": str(r.path), **{k: v for k, v in r.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
            for r in runs]
    out.append("<h2>Results</h2>" + table(rows))
    panels = [(key, {r.name: r.series.get(key, []) for r in runs}) for key in ("train_loss", "val_loss")]
    metric = next((k for k in ("val_accuracy", "val_r2") if any(k in r.series for r in runs)), None)
    if metric:
        panels.append((metric, {r.name: r.series.get(metric, []) for r in runs}))
    out.append("<h2>Learning curves</h2>" + figure(figures.curves(panels), "learning curves of every run"))
    names = [r.name for r in runs]
    out.append("<h2>What differs between the recipes</h2>")
    out.append(table([{"key": k, **{n: json.dumps(v) for n, v in zip(names, values)}} for k, *values in diff], ["key", *names]))
    return out


def page(title: str, sections: list[str]) -> str:
    body = "\n".join(sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>\n{body}\n<p class='muted'>written by steepest report</p></body></html>\n")
