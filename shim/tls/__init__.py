"""HTTPS for scripts that hard-code Keap's legacy URL: the ``shim tls`` files."""
