package store

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SchemaVersion is the version of the database schema (the last migration
// applied): a backup can be restored only into the schema it was made with.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.pool.QueryRow(ctx, `select version from schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// RestoreBackup replaces every replicated table with the snapshot stream in
// r, in one transaction, and commits only if r ends cleanly (a backup
// reader authenticates its last chunk there) and every table's row count
// and checksum is the one expected. The applied index starts again at zero:
// the appliance starts a raft log of its own. On any error the database is
// as it was.
func (s *Store) RestoreBackup(ctx context.Context, r io.Reader, want map[string]TableChecksum) error {
	defer s.forgetChainHead() // it writes events apart from the fast path
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("restore backup: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := copyIn(ctx, tx, r); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	got, err := checksums(ctx, tx)
	if err != nil {
		return err
	}
	for _, t := range replicatedTables {
		w, ok := want[t]
		if !ok {
			return fmt.Errorf("the backup's manifest has no checksum for table %s", t)
		}
		if got[t] != w {
			return fmt.Errorf("table %s does not match the backup's manifest (%d rows restored, %d expected; checksum %s, expected %s)", t, got[t].Rows, w.Rows, got[t].MD5, w.MD5)
		}
	}
	if _, err := tx.Exec(ctx, `update fsm_state set applied_index = 0, applied_term = 0`); err != nil {
		return fmt.Errorf("restore backup: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("restore backup: commit: %w", err)
	}
	s.keysChanged()
	return nil
}

// SnapshotInfo is what a snapshot stream says of itself.
type SnapshotInfo struct {
	AppliedIndex uint64
	Tables       []string
}

// ScanSnapshot reads a whole snapshot stream without a database: its
// header, every table's frames to their end, and nothing after the last
// table. It checks the stream's structure before a restore touches data.
func ScanSnapshot(r io.Reader) (SnapshotInfo, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return SnapshotInfo{}, errors.New("the data is not a conclave snapshot")
	}
	raw, err := readFrame(br)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot header: %w", err)
	}
	var hdr snapshotHeader
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot header: %w", err)
	}
	for _, table := range hdr.Tables {
		fr := &frameReader{r: br}
		if _, err := io.Copy(io.Discard, fr); err != nil {
			return SnapshotInfo{}, fmt.Errorf("snapshot table %s: %w", table, err)
		}
	}
	if n, _ := io.Copy(io.Discard, br); n > 0 {
		return SnapshotInfo{}, fmt.Errorf("the snapshot has %d bytes after its last table", n)
	}
	return SnapshotInfo{AppliedIndex: hdr.AppliedIndex, Tables: hdr.Tables}, nil
}
