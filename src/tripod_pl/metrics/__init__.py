"""Evaluation metrics: InfoMEC and DCI (DESIGN §6)."""
