"""The transactional outbox: domain events written with the changes they report."""
