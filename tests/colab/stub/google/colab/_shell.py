"""The kernel's shell under Colab's class path, so ``str(get_ipython())`` names google.colab."""

from ipykernel.zmqshell import ZMQInteractiveShell


class Shell(ZMQInteractiveShell):
    """Colab's shell is a ``ZMQInteractiveShell`` subclass at ``google.colab._shell.Shell``."""
