"""The check registry: name -> function(DoctorContext) -> CheckResult. Flag `default=False` marks
checks that only run when asked for (`--checks`)."""

from steepest.registry import Registry

CHECKS = Registry("check")
