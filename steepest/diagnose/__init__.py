"""The doctor: a training-debugging checklist (after Karpathy 2019, "A Recipe for Training Neural
Networks", and Google's Deep Learning Tuning Playbook) as small checks with a verdict, evidence
and a fix. Names load on first use (`steepest.lazy`)."""

from steepest.lazy import lazy_exports

_DOCTOR = "steepest.diagnose.doctor"
_EXPORTS = {
    "CHECKS": "steepest.diagnose._registry", "DoctorContext": "steepest.diagnose.context",
    "CheckResult": "steepest.diagnose.report", "Report": "steepest.diagnose.report",
    **{n: _DOCTOR for n in ("context_from_components", "context_from_recipe", "default_checks", "diagnose_fit", "diagnose_run", "run_doctor")},
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
