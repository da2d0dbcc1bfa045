"""Errors that mean "the user asked for something we cannot do": the CLI prints them as one line."""


class AEPOInputError(ValueError):
    """Bad input (a column, row, flag or file the user controls). The message says how to fix it."""


class IncompleteRunError(RuntimeError):
    """Some shards of a launcher run did not finish; nothing was assembled or pushed."""
