"""Errors that mean "the user asked for something we cannot do": the CLI prints them as one line."""


class AEPOInputError(ValueError):
    """Bad input (a column, row, flag or file the user controls). The message says how to fix it."""


class IncompleteRunError(RuntimeError):
    """Some shards of a launcher run did not finish; nothing was assembled or pushed."""


class JudgeError(IncompleteRunError):
    """The external judge (judge:MODEL) failed after its retries; its answers so far are cached, a rerun resumes."""


class HubPushError(RuntimeError):
    """Pushing to the Hub failed. The local output is complete; `aepo push <folder> <repo_id>` pushes it later."""

    def __init__(self, message: str, repo_id: str | None = None, local_folder: str | None = None):
        super().__init__(message)
        self.repo_id, self.local_folder = repo_id, local_folder

    def __reduce__(self):
        return type(self), (str(self), self.repo_id, self.local_folder)


def exit_code(prog: str, action) -> int:
    """Run `action()`; a user mistake or a failed run becomes one line on stderr and an exit code.

    Anything else is a bug in this package and keeps its traceback.
    """
    import sys

    try:
        return action()
    except AEPOInputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except (IncompleteRunError, HubPushError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # its message, when it has one, says what was written (push_and_summarize)
        print(f"{prog}: interrupted; {str(err) or 'no output was written under the output name'}", file=sys.stderr)
        return 130
