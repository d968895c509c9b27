// Package static holds the console's CSS, script and icons, embedded in the
// binary.
package static

import "embed"

// FS holds the files served under /static/.
//
//go:embed *.css *.js *.svg
var FS embed.FS
