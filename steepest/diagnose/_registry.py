"""The check registry: name -> function(DoctorContext) -> CheckResult, by import path. Flag
`default=False` marks checks that only run when asked for (`--checks`). The doctor runs them in
the order of this table (cheap, structural checks first; short training runs last)."""

from steepest.registry import Registry

CHECKS = Registry("check")

R = CHECKS.register
R("forward_shape", "steepest.diagnose.checks_model:forward_shape")
R("loss_api", "steepest.diagnose.checks_model:loss_api")
R("nonfinite", "steepest.diagnose.checks_training:nonfinite")
R("initial_loss", "steepest.diagnose.checks_model:initial_loss")
R("preprocessing", "steepest.diagnose.checks_data:preprocessing")
R("duplicates", "steepest.diagnose.checks_data:duplicates")
R("class_imbalance", "steepest.diagnose.checks_data:class_imbalance")
R("dropout_with_norm", "steepest.diagnose.checks_model:dropout_with_norm")
R("batchnorm_batch_size", "steepest.diagnose.checks_model:batchnorm_batch_size")
R("sigmoid_hidden", "steepest.diagnose.checks_model:sigmoid_hidden")
R("activations", "steepest.diagnose.checks_model:activations")
R("dead_relu", "steepest.diagnose.checks_model:dead_relu")
R("gradient_flow", "steepest.diagnose.checks_training:gradient_flow")
R("overfit_tiny", "steepest.diagnose.checks_training:overfit_tiny")
R("real_vs_noise", "steepest.diagnose.checks_training:real_vs_noise")
R("learning_rate", "steepest.diagnose.checks_training:learning_rate")
R("precision", "steepest.diagnose.checks_training:precision")
R("training_setup", "steepest.diagnose.checks_setup:training_setup")
R("weight_decay", "steepest.diagnose.checks_training:weight_decay", default=False)
R("weight_decay_val", "steepest.diagnose.checks_weight_decay:weight_decay_val", default=False)
R("label_noise", "steepest.diagnose.checks_data:label_noise", default=False)
