package cluster

import (
	"context"
	"sync"
	"time"
)

// stateDebounce is how long a new state must hold before it is recorded:
// a link that flaps does not flood the audit log with events.
const stateDebounce = 2 * time.Second

// stateEvents are the events of a change of this member's state.
func stateEvents(from, to string) []string {
	evs := []string{"ApplianceStateChanged"}
	switch {
	case from == StateOnline && to == StatePrimaryNoQuorum:
		evs = append(evs, "ClusterPrimaryQuorumLost")
	case from == StatePrimaryNoQuorum && to == StateOnline:
		evs = append(evs, "ClusterPrimaryQuorumRestored")
	case from == StateReplicaWithQuorum && to == StateReplicaNoQuorum:
		evs = append(evs, "ClusterReplicaQuorumLost")
	case from == StateReplicaNoQuorum && to == StateReplicaWithQuorum:
		evs = append(evs, "ClusterReplicaQuorumRestored")
	}
	return evs
}

// eventQueue holds events that cannot be written while there is no quorum;
// they are written later with the time they happened.
type eventQueue struct {
	mu  sync.Mutex
	cmd []Command
	// flushing is held by the one flushEvents at work: the state watcher
	// and Enable Offline Workflow both flush, and two flushes would write
	// the same head twice and pop it twice.
	flushing sync.Mutex
}

// push queues c with its ID given now, so a write retried after a timeout
// that did commit is the same event, kept once.
func (q *eventQueue) push(c Command) {
	if c.ID == "" {
		c.ID = NewRecordID()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cmd = append(q.cmd, c)
}

func (q *eventQueue) peek() (Command, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.cmd) == 0 {
		return Command{}, false
	}
	return q.cmd[0], true
}

func (q *eventQueue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cmd = q.cmd[1:]
}

// watchState records changes of this member's state, debounced, and writes
// queued events whenever a primary can be reached.
func (n *Node) watchState() {
	defer n.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Starting up is not a change of state: watch from the moment the
	// cluster is ready.
	select {
	case <-n.closing:
		return
	case <-n.ready:
	}
	recorded := n.SelfState()
	candidate, since := recorded, time.Now()
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
		if _, id := n.r().LeaderWithID(); id != "" {
			n.lastLeader.Store(string(id))
		}
		now := n.SelfState()
		if now != candidate {
			candidate, since = now, time.Now()
		}
		if candidate != recorded && time.Since(since) >= stateDebounce {
			at := since.UTC()
			for _, typ := range stateEvents(recorded, candidate) {
				n.events.push(Command{Type: CmdRecordEvent, At: at, Actor: "system", Member: n.ID(),
					Event: &EventSpec{Type: typ, Details: map[string]string{"from": recorded, "to": candidate, "member": n.cfg.Name}}})
			}
			n.log.Info("appliance state changed", "from", recorded, "to", candidate)
			recorded = candidate
		}
		n.flushEvents()
	}
}

// flushEvents writes queued events, oldest first, while it can.
func (n *Node) flushEvents() {
	n.events.flushing.Lock()
	defer n.events.flushing.Unlock()
	for {
		cmd, ok := n.events.peek()
		if !ok {
			return
		}
		// An isolated member keeps its events in the offline spool, which
		// survives a restart; Resume Online merges them.
		if n.Isolated() {
			if err := n.ApplyOffline(context.Background(), cmd); err != nil {
				n.log.Warn("spool an event", "type", cmd.Event.Type, "err", err)
				return
			}
			n.events.pop()
			continue
		}
		if _, id := n.r().LeaderWithID(); id == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.Propose(ctx, cmd)
		cancel()
		if err != nil {
			return
		}
		n.events.pop()
	}
}

// PendingEvents counts the events waiting for a primary to be written.
func (n *Node) PendingEvents() int {
	n.events.mu.Lock()
	defer n.events.mu.Unlock()
	return len(n.events.cmd)
}
