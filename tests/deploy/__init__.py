"""Tests of the local stack (deploy/stack.py) and of the Kafka version it runs."""
