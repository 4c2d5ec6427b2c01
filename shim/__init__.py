"""keyshim: keeps legacy Infusionsoft/Keap XML-RPC scripts running on Keap OAuth.

A script keeps sending a legacy-style API key as the first XML-RPC parameter; keyshim checks
that local key, swaps it for a fresh OAuth bearer token (or a service key) and forwards the
call to Keap's OAuth XML-RPC endpoint.
"""

__version__ = "0.1.0"
