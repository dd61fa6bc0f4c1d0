"""FHIR R4 export tests and the vendored HL7 schema."""
