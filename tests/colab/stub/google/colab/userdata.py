"""Colab's secrets (the key icon in the side bar), here with no secret set and none grantable."""

from google.colab import errors


class NotebookAccessError(errors.Error):
    """The notebook was not granted access to the secret."""


class SecretNotFoundError(errors.Error):
    """No secret of that name exists."""


class TimeoutException(errors.Error):
    """The front end did not answer in time."""


def get(key: str) -> str:
    """As in a Colab runtime where no secret is defined: ``key`` is never found."""
    raise SecretNotFoundError(f"Secret {key} does not exist.")
