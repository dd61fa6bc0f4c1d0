"""The booth's screens."""
