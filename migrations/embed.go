// Package migrations holds the numbered SQL migrations of an appliance's
// database. They are embedded so the binary migrates its own database.
package migrations

import "embed"

// FS holds the *.sql files, applied in order by tern.
//
//go:embed *.sql
var FS embed.FS
