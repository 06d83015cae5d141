"""Training as plain functions: prepare data, fit, evaluate, register and gate each family."""
