"""Reading, validating and splitting the labelled comment files, and the demo corpus."""
