"""FHIR R4 adapter at the edge: mapping rows to FHIR resources, the read API under `/fhir/R4`.

Domain code never imports from here; this package imports the domain's models and reads them.
``mapping`` holds pure functions (ORM row → FHIR dict) that other exports (Bulk Data) reuse.
"""
