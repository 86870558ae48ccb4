"""The job queue: Dramatiq over Redis between the API and the workers, and its event streams."""
