// Package backup is the file format of a Conclave backup: a readable,
// authenticated manifest followed by the cluster's replicated state (the
// raft snapshot stream of store.Snapshot) encrypted in chunks with a key
// derived from a passphrase, so that a backup can be restored onto a fresh
// appliance that has none of the cluster's keys.
//
// Layout:
//
//	"CONCLAVE-BACKUP-1\n"
//	uint32 length | header (JSON: key derivation parameters, nonce prefix, manifest)
//	32 bytes key check   HMAC-SHA256(macKey, "conclave backup key check")
//	32 bytes header MAC  HMAC-SHA256(macKey, header)
//	chunks: uint32 length | AES-256-GCM(chunk), nonce = prefix(7) | counter(4) | last(1),
//	        additional data = SHA-256(header)
//
// The chunks follow the STREAM construction (Hoang, Reyhanitabar, Rogaway,
// Vizár 2015): the counter in the nonce detects reordered or dropped chunks,
// the last-chunk flag detects a truncated file, and the header's hash as
// additional data ties every chunk to this manifest. The key check tells a
// wrong passphrase from an altered manifest.
package backup

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/hkdf"
	"golang.org/x/crypto/scrypt"
)

// Magic starts every backup file.
const Magic = "CONCLAVE-BACKUP-1\n"

// FormatVersion is the version of the layout above.
const FormatVersion = 1

// ChunkSize is how much plaintext one chunk holds.
const ChunkSize = 64 << 10

// MinPassphrase is the shortest passphrase accepted for a new backup.
const MinPassphrase = 12

// Bounds on what a file may ask of the reader: a crafted header must not
// make it allocate or compute without end.
const (
	maxHeader  = 1 << 20
	minLogN    = 10 // tests and fuzzing use this; new backups use DefaultLogN
	maxLogN    = 20
	maxR       = 16
	maxP       = 4
	maxTables  = 1000
	nonceSize  = 12
	prefixSize = 7
)

// DefaultLogN is scrypt's cost (N = 2^15, r = 8, p = 1: 32 MiB, about 0.1 s),
// the parameters scrypt's authors recommend for interactive use.
const DefaultLogN = 15

// Manifest describes a backup. It is stored readable (it holds no secret)
// and authenticated.
type Manifest struct {
	Format        int          `json:"format"`
	Build         string       `json:"build"`
	SchemaVersion int          `json:"schemaVersion"`
	ClusterID     string       `json:"clusterId"`
	ClusterName   string       `json:"clusterName,omitempty"`
	Member        string       `json:"member"`
	RaftIndex     uint64       `json:"raftIndex"`
	RaftTerm      uint64       `json:"raftTerm"`
	CreatedAt     time.Time    `json:"createdAt"`
	CreatedBy     string       `json:"createdBy"`
	Tables        []TableEntry `json:"tables"`
}

// TableEntry is one replicated table's row count and checksum.
type TableEntry struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
	MD5  string `json:"md5"`
}

// KDF is the key derivation's parameters.
type KDF struct {
	Name string `json:"name"` // "scrypt"
	LogN int    `json:"logN"`
	R    int    `json:"r"`
	P    int    `json:"p"`
	Salt []byte `json:"salt"`
}

type header struct {
	Version     int      `json:"version"`
	KDF         KDF      `json:"kdf"`
	Cipher      string   `json:"cipher"` // "AES-256-GCM-STREAM"
	ChunkSize   int      `json:"chunkSize"`
	NoncePrefix []byte   `json:"noncePrefix"`
	Manifest    Manifest `json:"manifest"`
}

// Errors a reader returns; the message says what is wrong with the file.
var (
	ErrNotBackup       = errors.New("this file is not a Conclave backup")
	ErrWrongPass       = errors.New("the passphrase is wrong for this backup")
	ErrTampered        = errors.New("the backup's manifest was altered or damaged: its authentication fails")
	ErrDamaged         = errors.New("the backup is damaged: a chunk fails authentication")
	ErrTruncated       = errors.New("the backup is truncated: it ends before its last chunk")
	ErrTrailing        = errors.New("the backup has data after its last chunk")
	ErrUnsupported     = errors.New("the backup was written in a format this build does not know")
	ErrShortPassphrase = fmt.Errorf("the passphrase must have at least %d characters", MinPassphrase)
)

type keys struct {
	aead   cipher.AEAD
	macKey []byte
}

func deriveKeys(passphrase string, k KDF) (*keys, error) {
	if k.Name != "scrypt" || k.LogN < minLogN || k.LogN > maxLogN || k.R < 1 || k.R > maxR || k.P < 1 || k.P > maxP || len(k.Salt) < 16 || len(k.Salt) > 64 {
		return nil, fmt.Errorf("%w: key derivation %s with N=2^%d r=%d p=%d", ErrUnsupported, k.Name, k.LogN, k.R, k.P)
	}
	master, err := scrypt.Key([]byte(passphrase), k.Salt, 1<<k.LogN, k.R, k.P, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	enc, mac := make([]byte, 32), make([]byte, 32)
	kdf := hkdf.New(sha256.New, master, nil, []byte("conclave backup v1"))
	io.ReadFull(kdf, enc)
	io.ReadFull(kdf, mac)
	block, err := aes.NewCipher(enc)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &keys{aead: aead, macKey: mac}, nil
}

func (k *keys) sum(data []byte) []byte {
	m := hmac.New(sha256.New, k.macKey)
	m.Write(data)
	return m.Sum(nil)
}

func (k *keys) keyCheck() []byte { return k.sum([]byte("conclave backup key check")) }

func nonce(prefix []byte, counter uint32, last bool) []byte {
	n := make([]byte, nonceSize)
	copy(n, prefix)
	binary.BigEndian.PutUint32(n[prefixSize:], counter)
	if last {
		n[nonceSize-1] = 1
	}
	return n
}

// Options tunes a new backup; the zero value is what production uses.
type Options struct {
	// LogN is scrypt's cost; 0 means DefaultLogN. Tests lower it.
	LogN int
}

// Writer encrypts a backup's data as it is written. Close writes the last
// chunk: a backup without it is refused as truncated.
type Writer struct {
	w       *bufio.Writer
	keys    *keys
	prefix  []byte
	ad      []byte
	buf     []byte
	counter uint32
	closed  bool
}

// NewWriter writes the header and returns a Writer for the data.
func NewWriter(w io.Writer, passphrase string, m Manifest, opt Options) (*Writer, error) {
	if len([]rune(passphrase)) < MinPassphrase {
		return nil, ErrShortPassphrase
	}
	logN := opt.LogN
	if logN == 0 {
		logN = DefaultLogN
	}
	h := header{Version: FormatVersion, Cipher: "AES-256-GCM-STREAM", ChunkSize: ChunkSize, Manifest: m,
		KDF: KDF{Name: "scrypt", LogN: logN, R: 8, P: 1, Salt: make([]byte, 32)}, NoncePrefix: make([]byte, prefixSize)}
	h.Manifest.Format = FormatVersion
	rand.Read(h.KDF.Salt)
	rand.Read(h.NoncePrefix)
	k, err := deriveKeys(passphrase, h.KDF)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("backup header: %w", err)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	bw.WriteString(Magic)
	binary.Write(bw, binary.BigEndian, uint32(len(raw)))
	bw.Write(raw)
	bw.Write(k.keyCheck())
	bw.Write(k.sum(raw))
	ad := sha256.Sum256(raw)
	return &Writer{w: bw, keys: k, prefix: h.NoncePrefix, ad: ad[:], buf: make([]byte, 0, ChunkSize)}, nil
}

// Write encrypts p, a full chunk at a time.
func (bw *Writer) Write(p []byte) (int, error) {
	if bw.closed {
		return 0, errors.New("backup writer closed")
	}
	n := len(p)
	for len(p) > 0 {
		take := min(ChunkSize-len(bw.buf), len(p))
		bw.buf = append(bw.buf, p[:take]...)
		p = p[take:]
		// A full chunk is sealed only once more data follows, so that the
		// last chunk (flagged) is never empty unless the data is.
		if len(bw.buf) == ChunkSize && len(p) > 0 {
			if err := bw.seal(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (bw *Writer) seal(last bool) error {
	ct := bw.keys.aead.Seal(nil, nonce(bw.prefix, bw.counter, last), bw.buf, bw.ad)
	if bw.counter == ^uint32(0) {
		return errors.New("backup too large for one file")
	}
	bw.counter++
	bw.buf = bw.buf[:0]
	if err := binary.Write(bw.w, binary.BigEndian, uint32(len(ct))); err != nil {
		return err
	}
	_, err := bw.w.Write(ct)
	return err
}

// Close seals the last chunk and flushes.
func (bw *Writer) Close() error {
	if bw.closed {
		return nil
	}
	bw.closed = true
	if err := bw.seal(true); err != nil {
		return err
	}
	return bw.w.Flush()
}

// ReadManifest reads a backup's manifest without the passphrase: it is not
// authenticated yet (Open does that).
func ReadManifest(r io.Reader) (Manifest, error) {
	_, h, err := readHeader(bufio.NewReader(r))
	return h.Manifest, err
}

func readHeader(r *bufio.Reader) ([]byte, header, error) {
	var h header
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != Magic {
		if bytes.HasPrefix(magic, []byte("CONCLAVE-BACKUP-")) {
			return nil, h, fmt.Errorf("%w (it is %q)", ErrUnsupported, bytes.TrimSpace(magic))
		}
		return nil, h, ErrNotBackup
	}
	var size uint32
	if err := binary.Read(r, binary.BigEndian, &size); err != nil {
		return nil, h, ErrTruncated
	}
	if size == 0 || size > maxHeader {
		return nil, h, fmt.Errorf("%w: header of %d bytes", ErrTampered, size)
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, h, ErrTruncated
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, h, fmt.Errorf("%w: %v", ErrTampered, err)
	}
	if h.Version != FormatVersion || h.Cipher != "AES-256-GCM-STREAM" || h.ChunkSize != ChunkSize {
		return nil, h, fmt.Errorf("%w: version %d, cipher %q, chunks of %d bytes", ErrUnsupported, h.Version, h.Cipher, h.ChunkSize)
	}
	if len(h.NoncePrefix) != prefixSize || len(h.Manifest.Tables) > maxTables {
		return nil, h, fmt.Errorf("%w: malformed header", ErrTampered)
	}
	return raw, h, nil
}

// Reader decrypts a backup's data, authenticating every chunk. It returns
// an error, never unauthenticated data, at the first chunk that fails, and
// io.EOF only after the last chunk, with nothing after it.
type Reader struct {
	r        *bufio.Reader
	keys     *keys
	prefix   []byte
	ad       []byte
	buf      []byte
	counter  uint32
	done     bool
	Manifest Manifest
}

// Open reads and authenticates the header and returns a Reader for the data.
func Open(r io.Reader, passphrase string) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	raw, h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	k, err := deriveKeys(passphrase, h.KDF)
	if err != nil {
		return nil, err
	}
	check, mac := make([]byte, 32), make([]byte, 32)
	if _, err := io.ReadFull(br, check); err != nil {
		return nil, ErrTruncated
	}
	if _, err := io.ReadFull(br, mac); err != nil {
		return nil, ErrTruncated
	}
	if !hmac.Equal(check, k.keyCheck()) {
		return nil, ErrWrongPass
	}
	if !hmac.Equal(mac, k.sum(raw)) {
		return nil, ErrTampered
	}
	ad := sha256.Sum256(raw)
	return &Reader{r: br, keys: k, prefix: h.NoncePrefix, ad: ad[:], Manifest: h.Manifest}, nil
}

func (br *Reader) Read(p []byte) (int, error) {
	for len(br.buf) == 0 {
		if br.done {
			return 0, io.EOF
		}
		if err := br.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, br.buf)
	br.buf = br.buf[n:]
	return n, nil
}

func (br *Reader) next() error {
	var size uint32
	if err := binary.Read(br.r, binary.BigEndian, &size); err != nil {
		return ErrTruncated
	}
	overhead := uint32(br.keys.aead.Overhead())
	if size < overhead || size > ChunkSize+overhead {
		return ErrDamaged
	}
	ct := make([]byte, size)
	if _, err := io.ReadFull(br.r, ct); err != nil {
		return ErrTruncated
	}
	pt, err := br.keys.aead.Open(nil, nonce(br.prefix, br.counter, false), ct, br.ad)
	if err != nil {
		// Perhaps the last chunk.
		pt, err = br.keys.aead.Open(nil, nonce(br.prefix, br.counter, true), ct, br.ad)
		if err != nil {
			return ErrDamaged
		}
		if _, err := br.r.ReadByte(); err != io.EOF {
			return ErrTrailing
		}
		br.done = true
	}
	br.counter++
	br.buf = pt
	return nil
}

// Verify reads a whole backup, authenticating every chunk, and returns its
// manifest; data, when not nil, sees the decrypted data as it goes.
func Verify(r io.Reader, passphrase string, data io.Writer) (Manifest, error) {
	br, err := Open(r, passphrase)
	if err != nil {
		return Manifest{}, err
	}
	if data == nil {
		data = io.Discard
	}
	if _, err := io.Copy(data, br); err != nil {
		return br.Manifest, err
	}
	return br.Manifest, nil
}
