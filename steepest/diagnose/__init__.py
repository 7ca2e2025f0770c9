"""The doctor: the references' debugging checklist as small checks with a verdict, evidence and a fix."""

from steepest.diagnose._registry import CHECKS
from steepest.diagnose.context import DoctorContext
from steepest.diagnose.doctor import (
           context_from_components,
           context_from_recipe,
           default_checks,
           diagnose_fit,
           diagnose_run,
           run_doctor,
)
from steepest.diagnose.report import CheckResult, Report

__all__ = ["CHECKS", "CheckResult", "DoctorContext", "Report", "context_from_components", "context_from_recipe", "default_checks", "diagnose_fit",
           "diagnose_run", "run_doctor"]
