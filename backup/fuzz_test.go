package backup

import (
	"bytes"
	"io"
	"testing"
)

// FuzzOpen feeds arbitrary files to the reader: it must refuse them with
// an error, never panic, allocate without bound or hand out data that is
// not authenticated.
func FuzzOpen(f *testing.F) {
	f.Add(write(f, []byte("a small backup")))
	f.Add(write(f, bytes.Repeat([]byte{7}, ChunkSize+3)))
	f.Add([]byte(Magic))
	f.Add([]byte(Magic + "\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, file []byte) {
		m, err := Verify(bytes.NewReader(file), testPass, io.Discard)
		if err == nil && m.Format != FormatVersion {
			t.Fatalf("accepted a manifest of format %d", m.Format)
		}
		ReadManifest(bytes.NewReader(file))
	})
}
