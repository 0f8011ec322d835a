"""Custom actions for the engine, served by rasa-sdk (`python -m rasa_sdk --actions actions`).

rasa-sdk registers every concrete Action subclass found in this package, one module per concern.
"""
