"""Background work (spec api-v2 sections 8-10): the job functions and what they need."""
