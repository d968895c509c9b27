package cluster

// AppliedIndex is the raft index of the last command this member applied
// to its database: a read of one number, cheap enough to poll in a loop
// (benchmarks time replication with it).
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }
