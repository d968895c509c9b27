package workflow

import (
	"strings"
	"testing"
	"unicode/utf8"

	"conclave/store"
)

// FuzzReadImport feeds arbitrary files to the CSV import's reader and
// planner. The property: no panic; every refused row is named by a line
// and a reason; every accepted row has every field, within its limits.
func FuzzReadImport(f *testing.F) {
	for _, seed := range []string{
		"asset,address,platform,username,password\nweb1,10.0.0.1,linux,root,S3cret-pass-1\n",
		"\uFEFFasset,address,platform,username,password\r\nweb1,10.0.0.1,linux,root,S3cret-pass-1\r\n",
		"web1,10.0.0.1,linux,root\n",
		"\"unterminated,10.0.0.1,linux,root,pw\n",
		"web1,10.0.0.1,linux,root,S3cret-pass-1\nweb1,10.0.0.2,linux,admin,S3cret-pass-2\n",
		",,,,\n\n\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, file string) {
		rows, problems, err := readImport(strings.NewReader(file))
		if err != nil {
			return // the reader itself failed (not a row's fault)
		}
		for _, p := range problems {
			if p.Line < 1 || p.Message == "" {
				t.Fatalf("a problem without a line or a reason: %+v", p)
			}
		}
		for _, r := range rows {
			if r.Line < 1 || r.AssetName == "" || r.Address == "" || r.Platform == "" || r.Username == "" || r.Secret == "" {
				t.Fatalf("an accepted row with an empty field: %+v", r.ImportRow)
			}
			if len(r.AssetName) > MaxNameLen || len(r.Address) > MaxAddressLen || len(r.Platform) > MaxPlatformLen || len(r.Username) > MaxUsernameLen {
				t.Fatalf("an accepted row over a limit: %+v", r.ImportRow)
			}
			if !utf8.ValidString(r.AssetName + r.Address + r.Platform + r.Username) {
				t.Fatalf("an accepted row that is not UTF-8: %+v", r.ImportRow)
			}
		}
		for _, p := range plan(rows, map[string]*store.ExistingAsset{}) {
			if p.Line < 1 || p.Message == "" {
				t.Fatalf("a planning problem without a line or a reason: %+v", p)
			}
		}
	})
}
