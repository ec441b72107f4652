"""Push: the transactional outbox of domain events, and their delivery to signed webhooks and
FHIR R4 topic-based Subscriptions (docs/push.md)."""
