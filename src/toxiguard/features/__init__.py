"""Text features: TF-IDF cleaning and featurizer, character n-grams, text statistics."""
