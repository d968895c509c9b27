package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"conclave/store"
)

// StepFunc runs one step of an operation. It reports progress through p.
type StepFunc func(ctx context.Context, p *Progress) error

// StepSpec is a named step.
type StepSpec struct {
	Name string
	Run  StepFunc
}

// OperationSpec describes an operation for the runner.
type OperationSpec struct {
	Kind       string // the lock kind: Enroll, Remove, Failover, Reset, ...
	Steps      []StepSpec
	StartEvent string // e.g. ClusterReplicaEnrollmentStarted
	EndEvent   string // e.g. ClusterReplicaEnrollmentCompleted
	Details    map[string]string
	// OnFailure undoes what the steps did, so a failed operation leaves
	// the cluster as it was.
	OnFailure func(ctx context.Context, failure error)
}

// Runner runs operations on the primary. Every start, progress report and
// end of a step is a raft command, so every member shows the same progress,
// and a primary elected after a crash finds what was going on.
type Runner struct {
	n       *Node
	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
	// stopping: this member shuts down. A running operation is left as it
	// is, neither undone nor ended, for the next primary to settle, as
	// after a crash.
	stopping atomic.Bool
	// settlers decide, per kind, what becomes of an operation whose
	// primary stopped mid-way: resumed where that is safe, ended when its
	// outcome is known, otherwise undone or left ResultUnknown.
	settlers map[string]func(ctx context.Context, op store.Operation) Settlement
}

// Settlement is what a settler decided for an operation left unfinished.
type Settlement struct {
	// State is the operation's end: OpSucceeded or OpFailed when the
	// outcome is known; empty for OpResultUnknown.
	State   string
	Message string
	// Resume, when set, runs the operation's steps again from the first
	// one that did not succeed, on this member.
	Resume *OperationSpec
	// Defer leaves the operation to the next primary (this member hands
	// over first, e.g. because it is the one being removed).
	Defer bool
}

func newRunner(n *Node) *Runner {
	return &Runner{n: n, running: map[string]context.CancelFunc{},
		settlers: map[string]func(context.Context, store.Operation) Settlement{
			"Enroll":   n.settleEnrollment,
			"Remove":   n.settleUnjoin,
			"Failover": n.settleFailover,
			// Data key rotation (cluster/keys.go).
			KindKeyRotation: n.settleKeyRotation,
		}}
}

// Start takes the cluster lock for a new operation and runs it in the
// background. It fails when the lock is held, naming the holder.
func (r *Runner) Start(ctx context.Context, actor string, spec OperationSpec) (string, error) {
	if r.stopping.Load() {
		return "", errors.New("this appliance is shutting down; start the operation on another member")
	}
	opID := uuid.NewString()
	names := make([]string, len(spec.Steps))
	for i, s := range spec.Steps {
		names[i] = s.Name
	}
	var ev *EventSpec
	if spec.StartEvent != "" {
		ev = &EventSpec{Type: spec.StartEvent, OperationID: opID, Details: spec.Details}
	}
	// Known as running before it exists, so that settleOrphans never takes
	// it for an orphan.
	runCtx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.running[opID] = cancel
	r.mu.Unlock()
	if err := r.n.ProposeData(ctx, CmdCreateOperation, actor, CreateOperation{OperationID: opID, Kind: spec.Kind, Steps: names}, ev); err != nil {
		r.mu.Lock()
		delete(r.running, opID)
		r.mu.Unlock()
		cancel()
		return "", err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.running, opID)
			r.mu.Unlock()
			cancel()
		}()
		r.run(runCtx, opID, actor, spec, 0)
	}()
	return opID, nil
}

// resume runs an operation another primary started, from its first step
// that did not succeed.
func (r *Runner) resume(ctx context.Context, op store.Operation, spec OperationSpec) {
	from := 0
	for from < len(op.Steps) && op.Steps[from].State == StepSucceeded {
		from++
	}
	if from >= len(spec.Steps) {
		from = len(spec.Steps) - 1
	}
	r.n.log.Info("resuming an operation the previous primary left unfinished", "operation", op.ID, "kind", op.Kind, "from", spec.Steps[from].Name)
	err := r.n.RecordEvent(ctx, "system", EventSpec{Type: "OperationResumed", OperationID: op.ID,
		Details: map[string]string{"kind": op.Kind, "by": r.n.cfg.Name, "step": spec.Steps[from].Name, "startedBy": r.n.memberName(ctx, op.OwnerID)}})
	if err != nil {
		r.n.log.Warn("record the resumption", "operation", op.ID, "err", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	if _, dup := r.running[op.ID]; dup {
		r.mu.Unlock()
		cancel()
		return
	}
	r.running[op.ID] = cancel
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.running, op.ID)
			r.mu.Unlock()
			cancel()
		}()
		r.run(runCtx, op.ID, op.Actor, spec, from)
	}()
}

// run runs spec's steps from the step at index from.
func (r *Runner) run(ctx context.Context, opID, actor string, spec OperationSpec, from int) {
	log := r.n.log.With("operation", opID, "kind", spec.Kind)
	result, errText := OpSucceeded, ""
	for i, s := range spec.Steps {
		if i < from {
			continue
		}
		if r.stopping.Load() {
			log.Info("operation left for the next primary: this member shuts down", "before", s.Name)
			return
		}
		p := &Progress{r: r, opID: opID, actor: actor, index: i, name: s.Name, started: time.Now().UTC()}
		if err := p.set(ctx, StepRunning, 0, "", nil); err != nil {
			log.Warn("operation abandoned: cannot record progress", "err", err)
			return
		}
		err := s.Run(ctx, p)
		end := time.Now().UTC()
		if err != nil && r.stopping.Load() {
			// Stopped, not failed: undoing now could race with the next
			// primary; it settles the operation.
			log.Info("operation left for the next primary: this member shuts down", "step", s.Name, "err", err)
			return
		}
		if err != nil {
			log.Warn("operation step failed", "step", s.Name, "err", err)
			p.set(ctx, StepFailed, p.current(), err.Error(), &end)
			for j := i + 1; j < len(spec.Steps); j++ {
				q := &Progress{r: r, opID: opID, actor: actor, index: j, name: spec.Steps[j].Name}
				q.set(ctx, StepSkipped, 0, "not run: an earlier step failed", nil)
			}
			result, errText = OpFailed, fmt.Sprintf("%s: %v", s.Name, err)
			if spec.OnFailure != nil {
				undoCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
				spec.OnFailure(undoCtx, err)
				cancel()
			}
			break
		}
		if err := p.set(ctx, StepSucceeded, 100, p.lastMessage(), &end); err != nil {
			log.Warn("operation abandoned: cannot record progress", "err", err)
			return
		}
	}
	var ev *EventSpec
	if spec.EndEvent != "" {
		details := map[string]string{"result": result}
		for k, v := range spec.Details {
			details[k] = v
		}
		if errText != "" {
			details["error"] = errText
		}
		ev = &EventSpec{Type: spec.EndEvent, OperationID: opID, Details: details}
	}
	finishCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.n.ProposeDataRetrying(finishCtx, CmdFinishOperation, actor, FinishOperation{OperationID: opID, State: result, Error: errText}, ev); err != nil {
		log.Warn("cannot record the end of the operation", "err", err)
	}
}

// settleOrphans ends operations that no runner of this member is running:
// their primary stopped mid-way, and nobody knows how far they got.
func (r *Runner) settleOrphans(ctx context.Context) {
	ops, err := r.n.store.UnfinishedOperations(ctx)
	if err != nil {
		r.n.log.Error("look for unfinished operations", "err", err)
		return
	}
	for _, op := range ops {
		r.mu.Lock()
		_, mine := r.running[op.ID]
		r.mu.Unlock()
		if mine || r.n.runningElsewhere(ctx, op) {
			continue
		}
		state, msg := OpResultUnknown, fmt.Sprintf("the primary that ran it (%s) stopped before it ended; check the cluster view before retrying.", r.n.memberName(ctx, op.OwnerID))
		if m := r.n.Mode(); m.State == StateStandaloneRO || m.State == StateLeavingCluster {
			// This appliance left the cluster while the operation ran: the
			// cluster keeps the real record. An Unjoin of it is done.
			msg = "this appliance left the cluster while it ran; the cluster's own record tells how it ended"
			if op.Kind == "Remove" {
				state, msg = OpSucceeded, "this appliance left the cluster and stands alone"
			}
		} else if settle := r.settlers[op.Kind]; settle != nil {
			s := settle(ctx, op)
			switch {
			case s.Defer:
				continue
			case s.Resume != nil:
				r.resume(ctx, op, *s.Resume)
				continue
			case s.State != "":
				state, msg = s.State, s.Message
				r.closeSteps(ctx, op, state, msg)
			default:
				msg += s.Message
			}
		}
		var ev *EventSpec
		errText := msg
		switch state {
		case OpResultUnknown:
			ev = &EventSpec{Type: "OperationResultUnknown", OperationID: op.ID, Details: map[string]string{"kind": op.Kind}}
		case OpSucceeded:
			errText = ""
		}
		err := r.n.ProposeData(ctx, CmdFinishOperation, "system", FinishOperation{OperationID: op.ID, State: state, Error: errText}, ev)
		if err != nil {
			r.n.log.Error("settle unfinished operation", "operation", op.ID, "err", err)
		}
	}
}

// closeSteps ends the steps an operation settled with a known outcome left
// open: done when it succeeded, not run when it failed.
func (r *Runner) closeSteps(ctx context.Context, op store.Operation, state, msg string) {
	now := time.Now().UTC()
	for i, s := range op.Steps {
		if s.EndedAt != nil || s.State == StepSkipped {
			continue
		}
		step := s
		step.EndedAt = &now
		if state == OpSucceeded {
			step.State, step.Percent, step.Message = StepSucceeded, 100, msg
		} else {
			step.State, step.Message = StepSkipped, "not run: "+msg
		}
		if err := r.n.ProposeData(ctx, CmdUpdateStep, "system", UpdateStep{OperationID: op.ID, Index: i, Step: step}, nil); err != nil {
			r.n.log.Warn("close the steps of a settled operation", "operation", op.ID, "err", err)
			return
		}
	}
}

// StopOperations stops this member's runs of operations, leaving them to
// the next primary, as when the member stops (Shutdown does it too).
func (n *Node) StopOperations() { n.runner.stop() }

func (r *Runner) stop() {
	r.stopping.Store(true)
	r.mu.Lock()
	for _, cancel := range r.running {
		cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Progress reports a running step's progress. Reports are rate-limited so a
// busy step does not flood the raft log; a report held back is sent when the
// interval has passed, so the last word is never lost.
type Progress struct {
	r       *Runner
	opID    string
	actor   string
	index   int
	name    string
	started time.Time

	// send orders proposals: a held-back report never lands after the
	// step's final state.
	send    sync.Mutex
	mu      sync.Mutex
	percent int
	message string
	last    time.Time
	pending *time.Timer
	ended   bool
}

// progressInterval is the least time between two progress commands.
const progressInterval = 250 * time.Millisecond

// Report sets the step's percentage and message.
func (p *Progress) Report(ctx context.Context, percent int, message string) error {
	p.mu.Lock()
	p.percent, p.message = min(max(percent, 0), 100), message
	wait := progressInterval - time.Since(p.last)
	if wait > 0 {
		if p.pending == nil {
			p.pending = time.AfterFunc(wait, p.flush)
		}
		p.mu.Unlock()
		return nil
	}
	p.last = time.Now()
	p.mu.Unlock()
	return p.sendRunning(ctx)
}

// sendRunning proposes the latest report unless the step has ended.
func (p *Progress) sendRunning(ctx context.Context) error {
	p.send.Lock()
	defer p.send.Unlock()
	p.mu.Lock()
	ended, percent, message := p.ended, p.percent, p.message
	p.mu.Unlock()
	if ended {
		return nil
	}
	return p.propose(ctx, StepRunning, percent, message, nil)
}

func (p *Progress) flush() {
	p.mu.Lock()
	p.pending = nil
	p.last = time.Now()
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.sendRunning(ctx)
}

// set records a state change of the step; a final state cancels any
// report still held back.
func (p *Progress) set(ctx context.Context, state string, percent int, message string, ended *time.Time) error {
	p.mu.Lock()
	p.last = time.Now()
	if ended != nil || state == StepSkipped {
		p.ended = true
		if p.pending != nil {
			p.pending.Stop()
			p.pending = nil
		}
	}
	p.mu.Unlock()
	p.send.Lock()
	defer p.send.Unlock()
	return p.propose(ctx, state, percent, message, ended)
}

func (p *Progress) propose(ctx context.Context, state string, percent int, message string, ended *time.Time) error {
	step := store.Step{Name: p.name, State: state, Message: message, Percent: percent, EndedAt: ended}
	if !p.started.IsZero() {
		started := p.started
		step.StartedAt = &started
	}
	return p.r.n.ProposeDataRetrying(ctx, CmdUpdateStep, p.actor, UpdateStep{OperationID: p.opID, Index: p.index, Step: step}, nil)
}

func (p *Progress) current() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.percent
}

func (p *Progress) lastMessage() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.message
}

// cancel stops this member's run of an operation, if it runs one.
func (r *Runner) cancel(opID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancel, ok := r.running[opID]; ok {
		cancel()
	}
}

// Running lists the operations this member runs now.
func (r *Runner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.running))
	for id := range r.running {
		out = append(out, id)
	}
	return out
}
