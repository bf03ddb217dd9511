"""Compiled modules (built from ext/stockbatch/_ext/*.pyx). Import them through
``stockbatch._backend`` so that ``STOCKBATCH_PURE_PYTHON=1`` can select the twins."""
