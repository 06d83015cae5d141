"""Serving: the REST API (`api`), the Gradio UI (`ui`), model loading and hot swap (`predictor`)."""
