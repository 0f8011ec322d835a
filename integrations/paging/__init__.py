"""Pages to counsellors: the senders that reach them and the dispatcher that drains the outbox."""
