"""The lower layer of liqwatch: value types, exact margin math, key names and the Redis store."""
