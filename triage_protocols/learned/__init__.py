"""The learned second screen: a character n-gram model beside the protocol's lexicon.

    corpus.py     the training rows (vendored PsySUICIDE, our own labelled set, the protocol's examples)
    train.py      `python -m triage_protocols.learned.train`: train both heads, write model/ (`make learned`)
    model.py      load once, score a message in microseconds; a missing model means lexicon only, said loudly
    crossval.py   stratified k-fold figures for benchmarks/triage_eval.py

The engine (engine.py) combines the two screens; the thresholds are protocol data (protocols/learned.yml).
"""
