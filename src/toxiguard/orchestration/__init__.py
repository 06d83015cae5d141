"""Prefect flows, the retraining trigger, the local stack and its processes, traffic simulation."""
