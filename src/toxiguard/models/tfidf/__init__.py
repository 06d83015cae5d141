"""The TF-IDF families: linear models over word and character n-gram features."""
