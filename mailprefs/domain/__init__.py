"""The domain core: people, consent, topics, suppression, the gate, tokens, campaigns.

Nothing in here knows about Flask requests or HTTP; functions take a session, flush, and
leave the commit to the caller (a request, a job or a CLI command).
"""
