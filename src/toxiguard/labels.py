"""The six Jigsaw labels, in the order of Kaggle's files, and the column names derived from them."""

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
#: Columns holding each label's probability and flag, wherever scores are written (batch
#: scoring output, the prediction log, the monitoring reference, the UI's download).
SCORE_PREFIX: Final = "score_"
FLAG_PREFIX: Final = "flag_"
SCORE_COLUMNS: Final[tuple[str, ...]] = tuple(f"{SCORE_PREFIX}{label}" for label in LABELS)
FLAG_COLUMNS: Final[tuple[str, ...]] = tuple(f"{FLAG_PREFIX}{label}" for label in LABELS)
