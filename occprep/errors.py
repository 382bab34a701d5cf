"""The one exception type that reaches the user as a one-line message."""


class OccprepError(Exception):
    """A problem with the user's input: the message names the file, record or flag and the fix.

    The CLI prints it as one line and exits with `exit_code`; anything else is a bug and keeps
    its traceback.
    """

    exit_code = 2
