"""The widget face, the only importer of ipywidgets: the balance panel."""
