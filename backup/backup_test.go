package backup

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"
)

const testPass = "correct horse battery staple"

func testManifest() Manifest {
	return Manifest{Build: "test", SchemaVersion: 1, ClusterID: "c1", Member: "m1", RaftIndex: 42, RaftTerm: 3,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), CreatedBy: "admin",
		Tables: []TableEntry{{Name: "users", Rows: 2, MD5: "abc"}}}
}

func write(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testPass, testManifest(), Options{LogN: minLogN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 17} {
		data := make([]byte, size)
		rand.Read(data)
		file := write(t, data)
		var got bytes.Buffer
		m, err := Verify(bytes.NewReader(file), testPass, &got)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("size %d: data differs", size)
		}
		if m.RaftIndex != 42 || m.Format != FormatVersion || m.Tables[0].Name != "users" {
			t.Fatalf("manifest %+v", m)
		}
		plain, err := ReadManifest(bytes.NewReader(file))
		if err != nil || plain.ClusterID != "c1" {
			t.Fatalf("ReadManifest: %+v %v", plain, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	data := make([]byte, 2*ChunkSize+100)
	rand.Read(data)
	file := write(t, data)
	headerEnd := bytes.Index(file, []byte(`}}`)) + 2 // end of the JSON header
	cases := []struct {
		name string
		file []byte
		pass string
		want error
	}{
		{"wrong passphrase", file, "not the passphrase at all", ErrWrongPass},
		{"not a backup", []byte("PK\x03\x04 a zip file, not a backup"), testPass, ErrNotBackup},
		{"empty", nil, testPass, ErrNotBackup},
		{"newer format", append([]byte("CONCLAVE-BACKUP-9\n"), file[len(Magic):]...), testPass, ErrUnsupported},
		{"truncated in the header", file[:headerEnd-5], testPass, ErrTruncated},
		{"truncated at a chunk boundary", file[:len(file)-(100+16+4)], testPass, ErrTruncated},
		{"truncated in a chunk", file[:len(file)-10], testPass, ErrTruncated},
		{"trailing data", append(append([]byte{}, file...), 0), testPass, ErrTrailing},
	}
	for _, c := range cases {
		_, err := Verify(bytes.NewReader(c.file), c.pass, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Every single flipped byte is refused, whatever it hits.
	for i := range file {
		if i%97 != 0 && i > 400 {
			continue // every byte of the header, a sample of the rest
		}
		bad := append([]byte{}, file...)
		bad[i] ^= 0x01
		if _, err := Verify(bytes.NewReader(bad), testPass, io.Discard); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
}

func TestShortPassphrase(t *testing.T) {
	if _, err := NewWriter(io.Discard, "short", testManifest(), Options{}); !errors.Is(err, ErrShortPassphrase) {
		t.Fatalf("got %v", err)
	}
}

// A reader never hands out data from a chunk it could not authenticate:
// a damaged second chunk yields the first chunk's data, then the error.
func TestNoUnauthenticatedData(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 2*ChunkSize+5)
	file := write(t, data)
	file[len(file)-ChunkSize/2] ^= 0xff // inside the second chunk
	r, err := Open(bytes.NewReader(file), testPass)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("got %v", err)
	}
	if len(got) > ChunkSize {
		t.Fatalf("read %d bytes, more than the authenticated first chunk", len(got))
	}
}
