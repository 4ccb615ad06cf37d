"""The only layer that speaks HTTP (and the only importer of requests): client, key, URLs,
answer parsing, the hard deadline."""
