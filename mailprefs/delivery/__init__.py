"""Delivery: message building, transports, the outbox and the worker loop."""
