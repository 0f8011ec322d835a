"""The gateway process: channel adapters, the switchboard and background workers in one Sanic app."""
