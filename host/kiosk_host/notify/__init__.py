"""Alerts to people: the message in the store's language, e-mail over SMTP, signed webhooks."""
