"""One module per command of the ``dhtquery`` command line."""
