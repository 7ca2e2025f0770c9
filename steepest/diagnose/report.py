"""Check results and the doctor's report: a readable table and JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("ok", "warn", "fail", "skip")


@dataclass
class CheckResult:
    name: str
    verdict: str  # ok | warn | fail | skip
    summary: str  # one line: what was measured
    fix: str = ""  # one sentence: what to do (empty when ok)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")


def ok(name: str, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(name, "ok", summary, "", evidence)


def warn(name: str, summary: str, fix: str, **evidence: Any) -> CheckResult:
    return CheckResult(name, "warn", summary, fix, evidence)


def fail(name: str, summary: str, fix: str, **evidence: Any) -> CheckResult:
    return CheckResult(name, "fail", summary, fix, evidence)


def skip(name: str, summary: str) -> CheckResult:
    return CheckResult(name, "skip", summary)


@dataclass
class Report:
    results: list[CheckResult]

    def __getitem__(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.verdict == "fail"]

    @property
    def warned(self) -> list[CheckResult]:
        return [r for r in self.results if r.verdict == "warn"]

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.results], indent=2, default=float)

    def table(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
        width = max((len(r.name) for r in self.results), default=4)
        lines = []
        for r in self.results:
            lines.append(f"{mark[r.verdict]}  {r.name:<{width}}  {r.summary}")
            if r.fix:
                lines.append(f"      {'':<{width}}  fix: {r.fix}")
        counts = {v: sum(r.verdict == v for r in self.results) for v in VERDICTS}
        lines.append(f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures, {counts['skip']} skipped")
        return "\n".join(lines)
