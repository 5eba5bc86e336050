"""Cluster mode: several brokers over ZooKeeper, each partition served by exactly one of them.

Modules:
- `records`: what cluster mode keeps in the metadata store, and its JSON records;
- `placement`: which live broker should own a partition (rendezvous hashing);
- `lease`: how long a broker may trust that its ZooKeeper session is alive;
- `registration`: this broker in the live set, kept across session loss;
- `ownership`: claims and leader epochs — the `Ownership` the broker consults;
- `balancer`: claims, opens and hands off partitions as brokers come and go;
- `peers`, `markers`: broker-to-broker WriteTxnMarkers for transactions;
- `runner`: `kop broker`; `process`, `dev_cluster`: `kop dev-cluster` and cluster services as
  child processes (ZooKeeper from storage/metadata/zookeeper_server.py);
- `store_helpers`: small metadata-store idioms shared by the above.
"""
