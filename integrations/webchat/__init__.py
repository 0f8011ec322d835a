"""The web chat channel: a page for students and parents, and the JSON API it (and any client) uses."""
