"""Colab's base error class (``huggingface_hub`` imports it beside ``userdata``)."""


class Error(Exception):
    """Base class of the errors Colab raises."""
