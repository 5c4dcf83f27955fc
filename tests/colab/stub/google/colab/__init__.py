"""Stand-in for Colab's ``google.colab`` package, for the Colab rehearsal (tests/colab).

Only what the tutorial and the libraries it loads look at: the module's presence in
``sys.modules`` (the notebook's first cell), the shell's class name (``huggingface_hub`` tells
Colab by ``str(get_ipython())``) and ``userdata``, Colab's secrets, here always empty. There
is deliberately no ``google/__init__.py`` beside this package: ``google`` stays a namespace
package, so ``google.protobuf`` (pymilvus needs it) still imports from site-packages.
"""

__version__ = "0.0.1a2+rehearsal"
