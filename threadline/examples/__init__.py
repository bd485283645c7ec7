"""Example applications shipped with threadline."""
