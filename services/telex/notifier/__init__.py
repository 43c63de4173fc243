"""The notifier: newsroom alerts as signed webhooks (see issue 6)."""
