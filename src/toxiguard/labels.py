"""The six Jigsaw labels, in the order of Kaggle's files."""

from typing import Final

LABELS: Final[tuple[str, ...]] = (
    "toxic",
    "severe_toxic",
    "obscene",
    "threat",
    "insult",
    "identity_hate",
)
ID_COLUMN: Final = "id"
TEXT_COLUMN: Final = "comment_text"
