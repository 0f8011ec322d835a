"""Everything between the outside world and the dialogue engine: channels, the switchboard, the gateway."""
