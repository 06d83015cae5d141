"""The CLI's console logging: other libraries' chatter hidden unless --verbose."""

from __future__ import annotations

import logging

import pytest

from toxiguard.cli.root import QUIET_ENVIRONMENT, configure


@pytest.mark.parametrize("verbose", [False, True])
def test_prefect_info_lines_show_only_with_verbose(
    verbose: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in QUIET_ENVIRONMENT.items():  # so that configure's setdefault leaks nothing
        monkeypatch.setenv(key, value)
    configure(verbose=verbose)
    try:
        logging.getLogger("prefect.flow_runs").info("Finished in state Completed()")
        logging.getLogger("prefect").warning("the temporary server is slow")
        logging.getLogger("toxiguard.monitoring.job").info("monitoring run 7: 0 predictions")
        printed = capsys.readouterr().err
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    assert "monitoring run 7" in printed
    assert "the temporary server is slow" in printed
    assert ("Finished in state Completed()" in printed) is verbose
