"""Triage protocols: the directory of hotlines for now; the screening engine arrives with its own issue."""
