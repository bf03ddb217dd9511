"""``python -m stockbatch`` runs the ``stockbatch`` command."""

from stockbatch.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
