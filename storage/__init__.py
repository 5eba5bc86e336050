"""storage: the native log model — storage nodes, ledgers, managed ledgers, metadata."""
