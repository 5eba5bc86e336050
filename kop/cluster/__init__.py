"""Cluster mode: several brokers over ZooKeeper, each partition served by exactly one of them.

Modules: `records` (what is kept in the metadata store), `placement` (which broker should own
a partition), `lease` (how long a broker may trust its ZooKeeper session), `ownership`
(registration, claims and leader epochs: the `Ownership` the broker consults), `balancer`
(claims, opens and hands off partitions as brokers come and go), `peers` and `markers`
(broker-to-broker WriteTxnMarkers), `runner` (`kop broker`), `process` and `dev_cluster`
(brokers as child processes; `kop dev-cluster`).
"""
