package handlers

import (
	"context"
	"errors"
	"net/http"

	"conclave/cluster"
	"conclave/store"
	"conclave/views"
	"conclave/workflow"
)

// pageChrome is what every page's frame shows from the replicated state:
// the cluster's name and the banner of a running operation.
type pageChrome struct {
	clusterName string
	banner      *views.Banner
}

func (h *Handlers) loadChrome(ctx context.Context) (pageChrome, error) {
	c := pageChrome{clusterName: "Conclave"}
	if settings, err := cluster.LoadSettings(ctx, h.Store); err != nil {
		h.Log.Warn("load settings", "err", err)
	} else {
		c.clusterName = settings.ClusterName
	}
	c.banner = h.banner(ctx)
	return c, nil
}

// page builds what every console page shows around its content.
func (h *Handlers) page(r *http.Request, title, nav string) views.Page {
	ctx := r.Context()
	chrome, _ := h.chrome.get(ctx, "", h.loadChrome)
	state := h.Node.SelfState()
	p := views.Page{
		Title:       title,
		ClusterName: chrome.clusterName,
		Nav:         nav,
		Version:     h.Version,
		Self: views.SelfBadge{
			Name:       h.Node.Name(),
			State:      state,
			StateLabel: cluster.StateLabel(state),
			Tone:       stateTone(state),
		},
	}
	if pr, ok := principal(r); ok {
		p.User = &views.UserBadge{Username: pr.Username, Role: pr.Role, IsAdmin: pr.IsAdmin(),
			CanRequest: workflow.CanRequest(pr.Role), CanApprove: workflow.CanApprove(pr.Role)}
		if chrome.banner != nil {
			b := *chrome.banner
			p.Banner = &b
		}
	}
	if m := h.Node.Mode(); m.State == cluster.StateIsolated {
		p.Offline = &views.OfflineBannerModel{Member: h.Node.Name(), Since: m.Since, Resuming: m.Resuming}
	}
	switch r.URL.Query().Get("done") {
	case "saved":
		p.Flash = "Saved."
	case "user-added":
		p.Flash = "The user was added."
	}
	return p
}

// banner describes the cluster lock, if it is held.
func (h *Handlers) banner(ctx context.Context) *views.Banner {
	lock, err := h.Store.Lock(ctx)
	if errors.Is(err, store.ErrNotFound) || err != nil {
		return nil
	}
	b := &views.Banner{Kind: lock.Kind, OperationID: lock.OperationID, Actor: lock.Actor, Since: lock.Since, OwnerName: h.memberName(ctx, lock.OwnerID)}
	if op, err := h.Store.Operation(ctx, lock.OperationID); err == nil {
		for _, s := range op.Steps {
			if s.State == cluster.StepRunning {
				b.StepName, b.Percent = s.Name, s.Percent
			}
		}
	}
	return b
}

func (h *Handlers) memberName(ctx context.Context, id string) string {
	ms, err := h.Store.Members(ctx)
	if err == nil {
		for _, m := range ms {
			if m.ID == id {
				return m.Name
			}
		}
	}
	return id
}

// stateTone colours a member state: green when all is well, red when the
// member cannot serve, amber for states an administrator chose or awaits.
func stateTone(state string) string {
	switch state {
	case cluster.StateOnline, cluster.StateReplicaWithQuorum:
		return "ok"
	case cluster.StateReplicaNoQuorum, cluster.StatePrimaryNoQuorum, cluster.StateUnreachable, cluster.StateQuarantine:
		return "bad"
	case cluster.StateUnknown:
		return "info"
	}
	return "warn"
}

func healthTone(h string) string {
	switch h {
	case cluster.HealthHealthy:
		return "ok"
	case cluster.HealthSick:
		return "bad"
	}
	return "warn"
}

func opTone(state string) string {
	switch state {
	case cluster.OpSucceeded:
		return "ok"
	case cluster.OpFailed, cluster.OpResultUnknown:
		return "bad"
	case cluster.OpRunning:
		return "info"
	}
	return ""
}
