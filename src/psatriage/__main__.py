"""``python -m psatriage`` is the ``psatriage`` command."""

from psatriage.cli import main

main()
