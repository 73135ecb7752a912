"""Errors that carry the CLI exit code of DESIGN §5.

0 ok/pass, 1 parity failed or a gate said no, 2 usage or input error,
3 partial failure of an operation (some steps failed, the journal says which).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3


class CutoverError(Exception):
    """An error the user can act on: one line naming the problem and the fix."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        if self.fix:
            return f"{self.message}: {self.fix}"
        return self.message


class InputError(CutoverError):
    """Bad input (config, arguments, files): exit 2, nothing changed."""


class NotFound(InputError):
    pass


class SchemaOutOfDate(InputError):
    pass


class GateFailed(CutoverError):
    exit_code = EXIT_FAIL


class IngestionPaused(GateFailed):
    """A legacy run was refused: the ingestion is paused, held or fenced on the legacy side."""


class PartialFailure(CutoverError):
    exit_code = EXIT_PARTIAL


class OrchestratorError(Exception):
    """The orchestrator could not be reached or refused the call (retryable). Re-exported by
    ``cutover.protocol``, where the sides and the engine meet."""
