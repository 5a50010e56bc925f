"""Built-in plugins of pubsub, found through entry points as third-party ones are."""
