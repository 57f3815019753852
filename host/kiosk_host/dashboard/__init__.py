"""The store managers' dashboard: live pages and a JSON API over the aggregator's database."""
