"""The one exception type users see: a sentence that says what happened and what to do."""


class RagError(Exception):
    """A failure the user can fix; ``str(err)`` is the whole, self-contained message."""
