"""The one exception type for user errors: the CLI prints its message on one line and exits 2."""


class AnimbenchError(Exception):
    """A user-facing error: say what is wrong, where (file, field), and what was expected."""
