package workflow

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"conclave/store"
)

// ImportColumns are the columns of an import file, in order.
var ImportColumns = []string{"asset", "address", "platform", "username", "password"}

// Limits of an import: the file, and each raft command it becomes.
const (
	MaxImportBytes   = 64 << 20
	importBatchBytes = 1 << 20
)

// Problem is one bad row of an import file.
type Problem struct {
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"error"`
}

// ImportError lists every bad row of a file; nothing was imported.
type ImportError struct{ Problems []Problem }

func (e *ImportError) Error() string {
	if len(e.Problems) == 1 {
		return "1 row of the file is wrong; nothing was imported"
	}
	return fmt.Sprintf("%d rows of the file are wrong; nothing was imported", len(e.Problems))
}

// ImportResult is what an import created.
type ImportResult struct {
	Assets   int `json:"assets"`
	Accounts int `json:"accounts"`
}

// plannedAsset is an asset of an import: one of the cluster's, or new.
type plannedAsset struct {
	id, name, address, platform string
	isNew                       bool
	line                        int            // the line that introduced a new asset
	usernames                   map[string]int // lower-case user name -> line (0: in the cluster)
}

// Import reads a CSV file (asset,address,platform,username,password; a
// header line is optional) and creates its assets and accounts, all or
// nothing. Every row is checked before anything is proposed; any bad row
// refuses the whole file with an *ImportError naming each bad line. The
// rows then go through raft in batches of about 1 MiB that are staged, and
// one last command commits them in one transaction.
func (s *Service) Import(ctx context.Context, actor Actor, r io.Reader) (ImportResult, error) {
	if ok, reason := s.RequestsAvailable(); !ok {
		return ImportResult{}, &UnavailableError{Reason: reason}
	}
	rows, problems, err := readImport(r)
	if err != nil {
		return ImportResult{}, err
	}
	if len(rows) == 0 && len(problems) == 0 {
		return ImportResult{}, store.Reject("csv", "the file has no rows; its columns are %s", strings.Join(ImportColumns, ","))
	}
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		names = append(names, strings.ToLower(r.AssetName))
	}
	existing, err := s.store.ExistingAssets(ctx, names)
	if err != nil {
		return ImportResult{}, err
	}
	problems = append(problems, plan(rows, existing)...)
	if len(problems) > 0 {
		sortProblems(problems)
		return ImportResult{}, &ImportError{Problems: problems}
	}
	keys, err := s.node.DataKeys(ctx)
	if err != nil {
		return ImportResult{}, err
	}
	importID := uuid.NewString()
	result := ImportResult{}
	batch := ImportBatch{ImportID: importID}
	size := 0
	flush := func() error {
		if len(batch.Rows) == 0 {
			return nil
		}
		err := s.propose(ctx, actor.Username, CmdImportBatch, batch)
		batch.Rows, size = nil, 0
		return err
	}
	for _, r := range rows {
		secret, err := sealPassword(keys, r.AccountID, r.Secret)
		if err != nil {
			return ImportResult{}, err
		}
		if r.NewAsset && r.first {
			result.Assets++
		}
		result.Accounts++
		row := importRow{Line: r.Line, AssetID: r.AssetID, NewAsset: r.NewAsset, AssetName: r.AssetName, Address: r.Address, Platform: r.Platform,
			AccountID: r.AccountID, Username: r.Username, Secret: secret}
		batch.Rows = append(batch.Rows, row)
		size += 160 + len(row.AssetName) + len(row.Address) + len(row.Platform) + len(row.Username) + len(secret)
		if size >= importBatchBytes {
			if err := flush(); err != nil {
				s.dropImport(actor, importID)
				return ImportResult{}, err
			}
		}
	}
	if err := flush(); err != nil {
		s.dropImport(actor, importID)
		return ImportResult{}, err
	}
	if err := s.propose(ctx, actor.Username, CmdImportCommit, ImportCommit{ImportID: importID, Rows: len(rows)}); err != nil {
		s.dropImport(actor, importID)
		return ImportResult{}, err
	}
	return result, nil
}

// dropImport forgets the staged rows of an import that failed (best
// effort: a commit an hour later forgets them anyway).
func (s *Service) dropImport(actor Actor, importID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.propose(ctx, actor.Username, CmdImportDrop, ImportCommit{ImportID: importID}); err != nil {
		s.log.Warn("drop a failed import", "import", importID, "err", err)
	}
}

// parsedRow is a row of an import file, its password still in clear.
type parsedRow struct {
	store.ImportRow
	first bool // the first row of a new asset
}

// readImport reads every row and checks each on its own.
func readImport(r io.Reader) ([]*parsedRow, []Problem, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	var rows []*parsedRow
	var problems []Problem
	first := true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			problems = append(problems, Problem{Line: pe.StartLine, Message: "the line is not valid CSV: " + pe.Err.Error()})
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("read the file: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if first {
			first = false
			rec[0] = strings.TrimPrefix(rec[0], "\uFEFF")
			if isHeader(rec) {
				continue
			}
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // an empty line
		}
		row, p := checkRow(line, rec)
		if p != nil {
			problems = append(problems, *p)
			continue
		}
		rows = append(rows, row)
	}
	return rows, problems, nil
}

func isHeader(rec []string) bool {
	if len(rec) != len(ImportColumns) {
		return false
	}
	for i, c := range ImportColumns {
		if strings.ToLower(strings.TrimSpace(rec[i])) != c {
			return false
		}
	}
	return true
}

// checkRow checks one row's fields.
func checkRow(line int, rec []string) (*parsedRow, *Problem) {
	if len(rec) != len(ImportColumns) {
		return nil, &Problem{Line: line, Message: fmt.Sprintf("the row has %d columns; it needs %d: %s", len(rec), len(ImportColumns), strings.Join(ImportColumns, ","))}
	}
	row := &parsedRow{ImportRow: store.ImportRow{Line: line}}
	var err error
	fields := []struct {
		col   string
		label string
		max   int
		dst   *string
	}{
		{"asset", "the asset", MaxNameLen, &row.AssetName},
		{"address", "the address", MaxAddressLen, &row.Address},
		{"platform", "the platform", MaxPlatformLen, &row.Platform},
		{"username", "the user name", MaxUsernameLen, &row.Username},
	}
	for i, f := range fields {
		if *f.dst, err = checkText(f.col, f.label, rec[i], f.max); err != nil {
			return nil, problemOf(line, err)
		}
	}
	if err := checkPassword("password", rec[4]); err != nil {
		return nil, problemOf(line, err)
	}
	row.Secret = rec[4] // sealed once every row is known to be good
	return row, nil
}

func problemOf(line int, err error) *Problem {
	var rej *store.Rejection
	if errors.As(err, &rej) {
		return &Problem{Line: line, Field: rej.Field, Message: rej.Message}
	}
	return &Problem{Line: line, Message: err.Error()}
}

// plan gives every row its asset (one of the cluster's, or a new one) and
// an account ID, and reports rows that contradict the cluster or each
// other: an asset given another address or platform, an account twice.
func plan(rows []*parsedRow, existing map[string]*store.ExistingAsset) []Problem {
	var problems []Problem
	assets := map[string]*plannedAsset{}
	for _, r := range rows {
		key := strings.ToLower(r.AssetName)
		a, ok := assets[key]
		if !ok {
			if ex, found := existing[key]; found {
				a = &plannedAsset{id: ex.ID, name: ex.Name, address: ex.Address, platform: ex.Platform, usernames: map[string]int{}}
				for u := range ex.Usernames {
					a.usernames[u] = 0
				}
			} else {
				a = &plannedAsset{id: uuid.NewString(), name: r.AssetName, address: r.Address, platform: r.Platform, isNew: true, line: r.Line, usernames: map[string]int{}}
				r.first = true
			}
			assets[key] = a
		}
		where := "in the cluster"
		if a.isNew {
			where = fmt.Sprintf("on line %d", a.line)
		}
		switch {
		case r.Address != a.address:
			problems = append(problems, Problem{Line: r.Line, Field: "address", Message: fmt.Sprintf("the asset %q has the address %q %s; one asset has one address", a.name, a.address, where)})
			continue
		case r.Platform != a.platform:
			problems = append(problems, Problem{Line: r.Line, Field: "platform", Message: fmt.Sprintf("the asset %q has the platform %q %s", a.name, a.platform, where)})
			continue
		}
		user := strings.ToLower(r.Username)
		if prev, dup := a.usernames[user]; dup {
			msg := fmt.Sprintf("the account %s@%s exists already in the cluster", r.Username, a.name)
			if prev > 0 {
				msg = fmt.Sprintf("the account %s@%s is also on line %d", r.Username, a.name, prev)
			}
			problems = append(problems, Problem{Line: r.Line, Field: "username", Message: msg})
			continue
		}
		a.usernames[user] = r.Line
		r.AssetID, r.NewAsset, r.AccountID = a.id, a.isNew, uuid.NewString()
	}
	return problems
}

// sortProblems merges the problems of the two passes in line order.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
}
