"""NATS JetStream: the ``nats://`` store and the consumer where JetStream owns delivery
(a group is one durable pull consumer shared by any number of workers)."""
