"""What keyshim keeps: the Store protocol, its SQLite implementation, sealed secrets."""
