"""Stand-in for Colab's kernel launcher (``python3 -m colab_kernel_launcher -f CONNECTION``).

As in Colab, ``google.colab`` is loaded before the first cell runs and the shell is
``google.colab._shell.Shell``; everything else is a plain ipykernel kernel.
"""

import google.colab  # noqa: F401  (loaded before any cell, as in Colab)
from google.colab._shell import Shell
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Type


class ColabKernel(IPythonKernel):
    shell_class = Type(Shell)


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=ColabKernel)
