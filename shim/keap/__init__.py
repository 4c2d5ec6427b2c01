"""Everything that talks to Keap: the HTTP clients, Keap's quota budget."""
