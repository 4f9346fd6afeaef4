"""HTTP API and playground: a second front on the same queue."""
