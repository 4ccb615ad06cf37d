"""The one truth about the balance: readings, the shared monitor, settings, and every word
and HTML fragment that puts a balance into words. Knows nothing of IPython or widgets."""
