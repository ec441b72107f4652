"""Patient app enrolment: single-use codes, the devices they enrol and their refresh tokens."""
