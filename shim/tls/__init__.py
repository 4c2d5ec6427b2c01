"""HTTPS for scripts that hard-code Keap's legacy URL: the local CA and the ``shim tls`` files."""
