package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"conclave/cluster"
)

const adminUsage = `Usage:
  conclave admin restore [flags] FILE   restore a backup into this (stopped) appliance

The appliance must be stopped and stand alone (fresh, or Online Read-only
after Unjoin). All its data is replaced by the backup's; at its next start it
is Online Read-only in a new cluster of its own: Activate it to make it a
primary. The backup is checked whole first: a damaged, truncated, foreign or
newer backup, or a wrong passphrase, is refused and nothing changes.

The passphrase comes from --passphrase-file, or CONCLAVE_BACKUP_PASSPHRASE,
or else the first line of standard input.
`

func admin(args []string, in io.Reader, out io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(out, adminUsage)
		return nil
	}
	switch args[0] {
	case "restore":
		return adminRestore(args[1:], in, out)
	}
	return fmt.Errorf("admin: unknown command %q\n\n%s", args[0], adminUsage)
}

func adminRestore(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("admin restore", flag.ContinueOnError)
	dataDir := fs.String("data-dir", env("CONCLAVE_DATA_DIR", "./var/appliance"), "the appliance's data directory (CONCLAVE_DATA_DIR)")
	dbURL := fs.String("database-url", env("CONCLAVE_DATABASE_URL", ""), "PostgreSQL URL; default: the private PostgreSQL under the data directory (CONCLAVE_DATABASE_URL)")
	passFile := fs.String("passphrase-file", "", "a file whose first line is the backup's passphrase")
	fs.Usage = func() { fmt.Fprint(fs.Output(), adminUsage, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("admin restore: name one backup file")
	}
	file := fs.Arg(0)
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	pass, err := readPassphrase(*passFile, in)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	// Touch nothing of a running appliance, its PostgreSQL above all.
	if err := cluster.CheckStopped(dir); err != nil {
		return fmt.Errorf("admin restore: nothing was changed: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres", "postmaster.pid")); err == nil && *dbURL == "" {
		return fmt.Errorf("admin restore: nothing was changed: the appliance's PostgreSQL is running (%s exists): stop the appliance first", filepath.Join(dir, "postgres", "postmaster.pid"))
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *dbURL == "" {
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err != nil {
			return fmt.Errorf("admin restore: %s has no private PostgreSQL: start the appliance once (conclave serve) or give --database-url", dir)
		}
	}
	st, _, _, closeDB, err := openDatabase(ctx, dir, *dbURL, log)
	if err != nil {
		return fmt.Errorf("admin restore: %w", err)
	}
	defer closeDB()
	id, _, err := cluster.LoadIdentity(dir)
	if err != nil {
		return err
	}
	actor := "admin restore"
	if u := os.Getenv("USER"); u != "" {
		actor += " (" + u + ")"
	}
	m, err := cluster.RestoreOffline(ctx, dir, st, id, file, pass, actor)
	if err != nil {
		return fmt.Errorf("admin restore: nothing was changed: %w", err)
	}
	rows := int64(0)
	for _, t := range m.Tables {
		rows += t.Rows
	}
	fmt.Fprintf(out, "Restored %s: cluster %s at raft index %d, made %s by %s on %s (build %s), %d rows.\n",
		filepath.Base(file), orElse(m.ClusterName, m.ClusterID), m.RaftIndex, m.CreatedAt.UTC().Format("2006-01-02 15:04 MST"), m.CreatedBy, m.Member, m.Build, rows)
	fmt.Fprintln(out, "Start the appliance: it is Online Read-only in a cluster of its own. Sign in with an account from the backup and Activate it.")
	return nil
}

func readPassphrase(file string, in io.Reader) (string, error) {
	var line string
	switch {
	case file != "":
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--passphrase-file: %w", err)
		}
		line, _, _ = strings.Cut(string(raw), "\n")
	case os.Getenv("CONCLAVE_BACKUP_PASSPHRASE") != "":
		return os.Getenv("CONCLAVE_BACKUP_PASSPHRASE"), nil
	default:
		s := bufio.NewScanner(in)
		if !s.Scan() {
			return "", errors.New("admin restore: no passphrase: give --passphrase-file, CONCLAVE_BACKUP_PASSPHRASE, or type it on standard input")
		}
		line = s.Text()
	}
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", errors.New("admin restore: the passphrase is empty")
	}
	return line, nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
