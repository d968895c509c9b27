// Command conclave is the Conclave appliance: one binary for serving the
// console and cluster, migrating its database, and the local demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"conclave/cluster"
	"conclave/pgctl"
	"conclave/store"
	"conclave/web"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `conclave: a clustered appliance for privileged access

Usage:
  conclave serve   [flags]   start this appliance (console, API, cluster)
  conclave demo    [flags]   start several appliances on this machine to try the cluster
  conclave migrate [flags]   bring the database schema up to date and exit
  conclave admin restore FILE  restore a backup into this stopped appliance ('conclave admin -h')
  conclave version           print the build

Run 'conclave serve -h' for the flags; each has an environment variable.
Run 'conclave demo -h' for the demo's.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:], os.Stdout)
	case "demo":
		err = runDemo(os.Args[2:], os.Stdout)
		if errors.Is(err, flag.ErrHelp) {
			err = nil
		}
	case "migrate":
		err = migrate(os.Args[2:])
	case "admin":
		err = admin(os.Args[2:], os.Stdin, os.Stdout)
	case "version", "--version", "-version":
		fmt.Println("conclave", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "conclave: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conclave:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// serveFlags are the flags of serve (and migrate, which needs the database).
type serveFlags struct {
	cfg      web.Config
	logLevel string
}

func parseServeFlags(name string, args []string) (*serveFlags, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := &serveFlags{}
	c := &f.cfg
	fs.StringVar(&c.Listen, "listen", env("CONCLAVE_LISTEN", "127.0.0.1:8441"), "HTTPS address to listen on (CONCLAVE_LISTEN)")
	fs.StringVar(&c.Advertise, "advertise", env("CONCLAVE_ADVERTISE", ""), "host:port other members use to reach this one; default: the listen address (CONCLAVE_ADVERTISE)")
	fs.StringVar(&c.DataDir, "data-dir", env("CONCLAVE_DATA_DIR", "./var/appliance"), "data directory: raft log, certificates, private PostgreSQL (CONCLAVE_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("CONCLAVE_DATABASE_URL", ""), "PostgreSQL URL; default: a private PostgreSQL under the data directory (CONCLAVE_DATABASE_URL)")
	fs.StringVar(&c.Name, "name", env("CONCLAVE_NAME", ""), "this appliance's name; default: the host name (CONCLAVE_NAME)")
	fs.StringVar(&c.OIDC.Issuer, "oidc-issuer", env("CONCLAVE_OIDC_ISSUER", ""), "OpenID Connect issuer URL; when set, wins over Settings (CONCLAVE_OIDC_ISSUER)")
	fs.StringVar(&c.OIDC.ClientID, "oidc-client-id", env("CONCLAVE_OIDC_CLIENT_ID", ""), "OIDC client ID (CONCLAVE_OIDC_CLIENT_ID)")
	fs.StringVar(&c.OIDC.DisplayName, "oidc-name", env("CONCLAVE_OIDC_NAME", ""), "label of the sign-in button (CONCLAVE_OIDC_NAME)")
	fs.StringVar(&c.OIDC.RolesClaim, "oidc-roles-claim", env("CONCLAVE_OIDC_ROLES_CLAIM", "groups"), "ID token claim that carries groups or roles (CONCLAVE_OIDC_ROLES_CLAIM)")
	roleMap := fs.String("oidc-role-map", env("CONCLAVE_OIDC_ROLE_MAP", ""), "claim values to roles: 'admins=ApplianceAdministrator,helpdesk=Helpdesk' (CONCLAVE_OIDC_ROLE_MAP)")
	fs.DurationVar(&c.SessionIdle, "session-idle", 30*time.Minute, "sign out after this much inactivity")
	fs.DurationVar(&c.SessionAbsolute, "session-max", 12*time.Hour, "sign out after this long in any case")
	fs.StringVar(&f.logLevel, "log-level", env("CONCLAVE_LOG_LEVEL", "info"), "debug, info, warn or error (CONCLAVE_LOG_LEVEL)")
	fs.StringVar(&c.BackupDir, "backup-dir", env("CONCLAVE_BACKUP_DIR", ""), "where backups are kept; default: <data-dir>/backups (CONCLAVE_BACKUP_DIR)")
	fs.DurationVar(&c.BackupEvery, "backup-every", 0, "make a backup this often, e.g. 24h; 0: no scheduled backups (needs CONCLAVE_BACKUP_PASSPHRASE)")
	fs.IntVar(&c.BackupKeep, "backup-keep", 7, "how many scheduled backups to keep")
	t := cluster.DefaultTiming()
	fs.DurationVar(&t.Heartbeat, "raft-heartbeat", t.Heartbeat, "raft heartbeat timeout")
	fs.DurationVar(&t.Election, "raft-election", t.Election, "raft election timeout")
	fs.DurationVar(&t.LeaderLease, "raft-lease", t.LeaderLease, "raft leader lease")
	devOffline := fs.String("dev-offline-threshold", env("CONCLAVE_DEV_OFFLINE_THRESHOLD", ""),
		"developer flag: the automatic Offline Workflow modes wait this long (e.g. 10s) instead of the settings' minutes; for demos and tests only (CONCLAVE_DEV_OFFLINE_THRESHOLD)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: conclave %s [flags]\n\nAlso: CONCLAVE_ADMIN_PASSWORD (first start only), CONCLAVE_OIDC_CLIENT_SECRET.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.Timing = t
	if *devOffline != "" {
		d, err := time.ParseDuration(*devOffline)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--dev-offline-threshold %q: give a positive duration like 10s", *devOffline)
		}
		c.OfflineThreshold = d
	}
	c.BackupPassphrase = os.Getenv("CONCLAVE_BACKUP_PASSPHRASE")
	if c.BackupEvery > 0 && len([]rune(c.BackupPassphrase)) < 12 {
		return nil, errors.New("--backup-every needs CONCLAVE_BACKUP_PASSPHRASE, 12 characters at least: it encrypts the scheduled backups")
	}
	if c.BackupEvery < 0 || (c.BackupEvery > 0 && c.BackupEvery < time.Minute) || c.BackupKeep < 1 {
		return nil, errors.New("--backup-every must be a minute or more, and --backup-keep 1 or more")
	}
	c.AdminPassword = os.Getenv("CONCLAVE_ADMIN_PASSWORD")
	c.OIDC.ClientSecret = os.Getenv("CONCLAVE_OIDC_CLIENT_SECRET")
	if *roleMap != "" {
		c.OIDC.RoleMapping = map[string]string{}
		for _, pair := range strings.Split(*roleMap, ",") {
			k, v, ok := strings.Cut(pair, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || !cluster.ValidRole(v) {
				return nil, fmt.Errorf("--oidc-role-map: %q must read value=Role with a role among %s", pair, strings.Join(cluster.Roles, ", "))
			}
			c.OIDC.RoleMapping[k] = v
		}
	}
	if c.OIDC.Issuer != "" && c.OIDC.ClientID == "" {
		return nil, errors.New("--oidc-issuer needs --oidc-client-id")
	}
	c.Version = version
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	c.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return f, nil
}

func serve(args []string, out io.Writer) error {
	f, err := parseServeFlags("serve", args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	limitMemory()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := web.Start(ctx, f.cfg)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped (Ctrl-C) while starting: not a failure.
			f.cfg.Log.Info("stopped while starting", "err", err)
			return nil
		}
		return err
	}
	printWelcome(out, a, f.cfg)
	select {
	case <-ctx.Done():
	case err := <-a.Done():
		if err != nil {
			f.cfg.Log.Error("https server stopped", "err", err)
		}
	}
	f.cfg.Log.Info("stopping: finishing requests, stopping raft and the database")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Shutdown(shutdownCtx); err != nil {
		return err
	}
	f.cfg.Log.Info("stopped")
	return nil
}

func printWelcome(out io.Writer, a *web.Appliance, cfg web.Config) {
	fmt.Fprintf(out, "\nConclave appliance %q is ready.\n", cfg.Name)
	fmt.Fprintf(out, "  Console:     %s\n", a.URL)
	fmt.Fprintf(out, "  Certificate: SHA-256 %s\n", a.Fingerprint)
	fmt.Fprintf(out, "               (self-signed: your browser will warn; compare this fingerprint with the one it shows)\n")
	switch {
	case a.GeneratedAdminPassword != "":
		fmt.Fprintf(out, "  Sign in:     admin / %s\n", a.GeneratedAdminPassword)
		fmt.Fprintf(out, "               (generated now and shown this once: keep it, or set CONCLAVE_ADMIN_PASSWORD before the first start)\n")
	case a.AdminCreated:
		fmt.Fprintf(out, "  Sign in:     admin / the password in CONCLAVE_ADMIN_PASSWORD\n")
	default:
		fmt.Fprintf(out, "  Sign in:     with your account (the first administrator is 'admin')\n")
	}
	// The last line: 'conclave demo' reads it to know the appliance started.
	fmt.Fprintf(out, "  Stop:        Ctrl-C\n\n")
}

func migrate(args []string) error {
	f, err := parseServeFlags("migrate", args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.cfg.DataDir, 0o700); err != nil {
		return err
	}
	_, from, to, closeDB, err := openDatabase(context.Background(), f.cfg.DataDir, f.cfg.DatabaseURL, f.cfg.Log)
	if err != nil {
		return err
	}
	defer closeDB()
	fmt.Printf("database schema: version %d → %d\n", from, to)
	return nil
}

// defaultMemoryLimit is the Go runtime's soft memory limit for an
// appliance unless GOMEMLIMIT sets another: under a burst of console
// requests the garbage collector works harder instead of letting the heap
// double (the console benchmark in bench/ measured 98 MB resident without
// it, 78 MB with it; the target is 100 MB).
const defaultMemoryLimit = 64 << 20

func limitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// openDatabase opens and migrates the appliance's database while the
// appliance is stopped: the one at url, or else its private PostgreSQL,
// started for the time being. closeDB closes it and stops that PostgreSQL.
func openDatabase(ctx context.Context, dataDir, url string, log *slog.Logger) (st *store.Store, from, to int32, closeDB func(), err error) {
	var pg *pgctl.Server
	stop := func() {
		if pg != nil {
			pg.Stop()
		}
	}
	if url == "" {
		if os.Geteuid() == 0 {
			os.Chmod(dataDir, 0o711)
		}
		if pg, err = pgctl.Start(ctx, dataDir+"/postgres", log); err != nil {
			return nil, 0, 0, nil, err
		}
		url = pg.URL()
	}
	if st, err = store.Open(ctx, url); err != nil {
		stop()
		return nil, 0, 0, nil, err
	}
	if from, to, err = st.Migrate(ctx); err != nil {
		st.Close()
		stop()
		return nil, 0, 0, nil, err
	}
	return st, from, to, func() { st.Close(); stop() }, nil
}
