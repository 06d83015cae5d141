"""What importing a module pulls in, checked in a fresh interpreter (this one has it all loaded)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_importing_evaluation_leaves_pyplot_alone() -> None:
    code = (
        "import sys, toxiguard.training.evaluation; assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
