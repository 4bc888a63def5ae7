"""HTTP plumbing shared by every feature: middleware, errors, auth dependencies, pagination."""
