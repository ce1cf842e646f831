"""Models: parameter pytrees with their ``field`` and ``loss`` functions."""
