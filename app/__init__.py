"""Task management API."""
