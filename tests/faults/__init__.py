"""Fault-injection helpers shared by the e2e and chaos suites."""
