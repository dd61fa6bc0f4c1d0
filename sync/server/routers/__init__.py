"""The server's routes, one module per concern."""
