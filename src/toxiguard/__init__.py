"""toxiguard: multi-label toxic comment classification, from Kaggle files to a monitored API."""

__version__ = "0.1.0"
