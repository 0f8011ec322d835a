"""The store of record: conversations, every message in and out, and the audit log.

A package of its own because two processes write to it (the gateway and the action server) and later
issues grow it into the case record; both import it, neither owns it.
"""
