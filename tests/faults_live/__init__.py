"""Live fault driver (issue 11, "A harness that keeps finding them").

The real gateway runs as its own OS process, against a stand-in engine and a stand-in action server
(tests/faults_live/standin_engine.py, also separate processes), on a SQLite store of record in a
temporary folder. The tests kill, pause, lock and make read-only those processes and the store at
chosen moments of a message's life, and then assert from the store itself that nothing was lost.
"""
