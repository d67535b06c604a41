"""The RingFS leader: metadata (name → version → ordered chunk list), ring membership and health checks.

GFS §2.4 (a single master holding the namespace and file-to-chunk mapping) with the chunk placement
delegated to a consistent-hash ring (Dynamo §4.2), as in the reference design.
"""
