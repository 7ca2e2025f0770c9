"""Tuning: the LR range test, optimizer comparison, batch-size advice, hyperparameter search."""
