"""Alert rules over trends, their state, and durable signed webhook delivery."""
