"""One module per schema revision of the monitoring store, oldest first."""
