"""The MLflow side: connection and loading, pyfunc wrapper, runs, versions and gated promotion."""
