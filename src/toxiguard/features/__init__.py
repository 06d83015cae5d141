"""Text features: TF-IDF cleaning and featurizer, character n-grams, the spans of features in a
raw text (for explanations), text statistics."""
