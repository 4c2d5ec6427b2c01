"""What keyshim keeps: the Store protocol, SQLite behind it, sealed secrets, the master key."""
