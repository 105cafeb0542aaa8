"""The one exception type for bad user input.

Raised anywhere in the library; the CLI turns it into one line on stderr and exit code 2.
The message names the file or option, what was found and what was expected.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong field, an impossible parameter."""

    exit_code = 2


class RunInterrupted(Exception):
    """SIGINT/SIGTERM ended a run after a completed round, whose checkpoint was written: not a failure."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


class RunDiverged(Exception):
    """A client's loss or update was not finite (NaN or infinity): the run stopped before that round's
    server step, keeping its last finite checkpoint. Every rank raises it after the same round."""

    exit_code = 3
