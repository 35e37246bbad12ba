"""Kafka connector that keeps NICE CXone outbound contact lists in sync with a CRM."""

__version__ = "0.1.0"
