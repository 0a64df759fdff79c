"""Errors that reach the user as one line: what went wrong, in which file, and what to do."""


class ToolkitError(Exception):
    """A problem with the user's input or configuration (never a bug): printed as one line, exit code 2.

    The one error type of every stage; the CLIs catch it and print it (`curation.core.cli.fail`).
    """


CurationError = ToolkitError  # the name every stage used first; kept so user code that catches it still works


class ShardError(CurationError):
    """One input shard cannot be processed; the other shards still finish."""

    def __init__(self, path: str, problem: str, fix: str):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}; {fix}")


class ShardsFailed(CurationError):
    """Raised at the end of a datatrove task whose shards were not all written, so the task is not marked complete."""
