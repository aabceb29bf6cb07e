"""``python -m metallo.cli``: the same as the ``metallo`` command."""

from metallo.cli import main

main()
