"""Code shared by the leader, the chunk servers and the user apps: placement, wire protocol, config."""
