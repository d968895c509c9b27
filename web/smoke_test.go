package web_test

import (
	"net/http"
	"testing"

	"conclave/internal/testapp"
)

func TestApplianceStartsAndServes(t *testing.T) {
	app := testapp.Start(t)
	var members []map[string]any
	if status := app.JSON(t, app.AdminToken(t), http.MethodGet, "/api/v1/cluster/members", nil, &members); status != http.StatusOK {
		t.Fatalf("members: status %d", status)
	}
	if len(members) != 1 || members[0]["state"] != "Online" || members[0]["role"] != "Primary" {
		t.Fatalf("members = %v, want one Online Primary", members)
	}
}
