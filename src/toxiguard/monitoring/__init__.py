"""Monitoring: the store (`store`), the prediction log writer (`prediction_log`)."""
