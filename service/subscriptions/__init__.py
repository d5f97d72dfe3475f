"""Topic-based Subscriptions (FHIR R4 Subscriptions Backport IG): the Subscription resource
(`spec`), who owns it (`owner`), the outbox written with every matching change (`outbox`),
the notification Bundles (`notification`) and their delivery by the background worker
(`delivery`). See docs/subscriptions.md."""
