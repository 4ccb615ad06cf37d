"""The IPython face: the extension, its magics and one-line cell errors. Speaks no HTTP."""
