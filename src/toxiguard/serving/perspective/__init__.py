"""A drop-in for Google's Perspective Comment Analyzer API (v1alpha1), served from our model."""
