package testapp

import (
	"net/http"
	"testing"
	"time"

	"conclave/web"
)

// Operation is an operation as GET /api/v1/operations/{id} answers it.
type Operation struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	Error string `json:"error"`
	Steps []struct {
		Name      string     `json:"name"`
		State     string     `json:"state"`
		Message   string     `json:"message"`
		Percent   int        `json:"percent"`
		StartedAt *time.Time `json:"startedAt"`
		EndedAt   *time.Time `json:"endedAt"`
	} `json:"steps"`
}

// StepDuration is how long the named step ran (zero if it did not end).
func (op Operation) StepDuration(name string) time.Duration {
	for _, s := range op.Steps {
		if s.Name == name && s.StartedAt != nil && s.EndedAt != nil {
			return s.EndedAt.Sub(*s.StartedAt)
		}
	}
	return 0
}

// WaitOperation polls an operation until it ends (at most wait).
func (a *App) WaitOperation(t testing.TB, token, id string, wait time.Duration) Operation {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var op Operation
		if status := a.JSON(t, token, http.MethodGet, "/api/v1/operations/"+id, nil, &op); status != http.StatusOK {
			t.Fatalf("operation %s: status %d", id, status)
		}
		if op.State != "Pending" && op.State != "Running" {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s still %s after %s: %+v", id, op.State, wait, op.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartAddReplica asks a (the primary) to add replica through the JSON API
// and returns the operation's ID.
func (a *App) StartAddReplica(t testing.TB, replica *App) string {
	t.Helper()
	var out struct{ OperationID, Error string }
	status := a.JSON(t, a.AdminToken(t), http.MethodPost, "/api/v1/cluster/members", map[string]string{
		"address": replica.Addr(), "authenticationToken": replica.AdminToken(t), "confirm": "Add Replica",
	}, &out)
	if status != http.StatusAccepted {
		t.Fatalf("add replica %s: status %d: %s", replica.Cfg.Name, status, out.Error)
	}
	return out.OperationID
}

// AddReplica adds replica to a's cluster and fails the test unless the
// operation succeeds.
func (a *App) AddReplica(t testing.TB, replica *App) Operation {
	t.Helper()
	id := a.StartAddReplica(t, replica)
	op := a.WaitOperation(t, a.AdminToken(t), id, 5*time.Minute)
	if op.State != "Succeeded" {
		t.Fatalf("add replica %s: %s: %s; steps %+v", replica.Cfg.Name, op.State, op.Error, op.Steps)
	}
	return op
}

// Named sets the appliance's name.
func Named(name string) Option { return func(c *web.Config) { c.Name = name } }
