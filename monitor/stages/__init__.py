"""The streaming stages of the daemon: classify and aggregate."""
