package handlers

import (
	"context"
	"io"
	"net/http"
	"time"

	"conclave/workflow"
)

// importCSV runs an import for the API and the page. A large file takes
// some seconds: it gets more time than other requests.
func (h *Handlers) importCSV(r *http.Request, body io.Reader) (workflow.ImportResult, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	return h.Workflow.Import(ctx, actorOf(r), body)
}
