"""Access: identity, consent and audit. Hands the store one policy per request."""
