"""The counsellor console's API under /console/api: sign-in (auth.py) and what signed-in staff do."""
