"""OAuth 2 and SMART on FHIR: registered clients, the token endpoint and its grants."""
