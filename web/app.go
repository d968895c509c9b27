// Package web assembles one appliance: its database (a private PostgreSQL
// when none is given), the raft node, the HTTPS server with its router and
// middleware, and an orderly shutdown.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"conclave/auth"
	"conclave/cluster"
	"conclave/handlers"
	"conclave/pgctl"
	"conclave/session"
	"conclave/store"
	"conclave/workflow"
)

// Config is an appliance's configuration; every field has a flag and an
// environment variable in cmd/conclave.
type Config struct {
	Listen        string // host:port of the HTTPS server
	Advertise     string // host:port other members use; default: the listen address
	DataDir       string
	DatabaseURL   string // empty: a private PostgreSQL under DataDir
	Name          string
	AdminPassword string // first start only
	Version       string
	OIDC          cluster.OIDCSettings // used when Issuer is set
	Timing        cluster.Timing
	Auth          auth.Config
	// Dialer reaches other appliances; tests pass one that cuts or delays
	// links. Nil: a plain net.Dialer.
	Dialer          cluster.Dialer
	SessionIdle     time.Duration
	SessionAbsolute time.Duration
	Log             *slog.Logger
	// OfflineThreshold, when set, replaces the thresholds of the automatic
	// Offline Workflow modes (--dev-offline-threshold; demos and tests).
	OfflineThreshold time.Duration
	// Backups: where they are kept (default <data-dir>/backups) and the
	// schedule (BackupEvery 0: none), with the passphrase that encrypts
	// scheduled backups.
	BackupDir        string
	BackupEvery      time.Duration
	BackupKeep       int
	BackupPassphrase string
}

// Appliance is a running appliance.
type Appliance struct {
	cfg    Config
	log    *slog.Logger
	pg     *pgctl.Server
	Store  *store.Store
	Node   *cluster.Node
	Auth   *auth.Service
	server *http.Server
	stream *cluster.StreamLayer
	ln     net.Listener
	stop   chan struct{}
	done   chan error
	// ready is closed once Start has finished (the first administrator
	// exists): /readyz answers 200 only then.
	ready chan struct{}
	// sweepDone is closed when the sweeper has stopped.
	sweepDone chan struct{}

	URL         string // https://host:port/
	Fingerprint string // SHA-256 of the appliance certificate
	// GeneratedAdminPassword is set on the first start when no password was
	// given: it is shown once.
	GeneratedAdminPassword string
	AdminCreated           bool

	// Workflow is the access-request workflow.
	Workflow *workflow.Service
	// expiryDone is closed when the expiry of check-outs has stopped.
	expiryDone chan struct{}
}

// Start brings an appliance up and returns once it serves HTTPS.
func Start(ctx context.Context, cfg Config) (_ *Appliance, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Timing == (cluster.Timing{}) {
		cfg.Timing = cluster.DefaultTiming()
	}
	if cfg.Auth == (auth.Config{}) {
		cfg.Auth = auth.DefaultConfig()
	}
	if cfg.SessionIdle == 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.SessionAbsolute == 0 {
		cfg.SessionAbsolute = 12 * time.Hour
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	a := &Appliance{cfg: cfg, log: cfg.Log, stop: make(chan struct{}), done: make(chan error, 1), ready: make(chan struct{})}
	// On any failure, undo what was started (the PostgreSQL above all).
	defer func() {
		if err != nil {
			if a.server != nil {
				a.server.Close()
			}
			a.closeAll()
		}
	}()

	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	dirMode := os.FileMode(0o700)
	if os.Geteuid() == 0 && cfg.DatabaseURL == "" {
		// The private PostgreSQL runs as the postgres user, which must be
		// able to pass through every directory it creates here.
		dirMode = 0o711
	}
	if err := os.MkdirAll(dataDir, dirMode); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		if os.Geteuid() == 0 {
			// The private PostgreSQL runs as the postgres user and must
			// be able to pass through the data directory (not list it).
			os.Chmod(dataDir, 0o711)
		}
		a.pg, err = pgctl.Start(ctx, filepath.Join(dataDir, "postgres"), cfg.Log)
		if err != nil {
			return nil, err
		}
		dbURL = a.pg.URL()
	}
	a.Store, err = store.Open(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	from, to, err := a.Store.Migrate(ctx)
	if err != nil {
		return nil, err
	}
	if from != to {
		cfg.Log.Info("database migrated", "from", from, "to", to)
	}

	identity, _, err := cluster.LoadIdentity(dataDir)
	if err != nil {
		return nil, err
	}
	a.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another appliance running? choose another --listen)", cfg.Listen, err)
	}
	listenAddr := a.ln.Addr().String()
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = listenAddr
	}
	cert, err := loadOrCreateCert(dataDir, certHosts(listenAddr, advertise))
	if err != nil {
		return nil, err
	}
	a.Fingerprint = Fingerprint(cert)
	a.URL = "https://" + advertise + "/"

	a.stream = cluster.NewStreamLayer(cluster.AdvertiseAddr(advertise))
	a.Node, err = cluster.Start(ctx, cluster.Config{
		DataDir: dataDir, Identity: identity, Name: cfg.Name, Advertise: advertise, Version: cfg.Version,
		Store: a.Store, Log: cfg.Log, Stream: a.stream, Timing: cfg.Timing, Dialer: cfg.Dialer,
		Apply: workflow.Apply, Prefetch: workflow.Prefetch, OfflineThreshold: cfg.OfflineThreshold,
	})
	if err != nil {
		return nil, err
	}
	a.Node.AddHealthCheck(certificateCheck(cert))
	a.Node.ConfigureBackups(&cluster.Backups{Dir: cfg.BackupDir, Every: cfg.BackupEvery, Keep: cfg.BackupKeep, Passphrase: cfg.BackupPassphrase})
	a.Auth = auth.NewService(a.Store, a.Node, cfg.Log, cfg.Auth)
	a.Workflow = workflow.New(a.Store, a.Node, cfg.Log)

	var oidcOverride *cluster.OIDCSettings
	if cfg.OIDC.Issuer != "" {
		o := cfg.OIDC
		if o.RolesClaim == "" {
			o.RolesClaim = cluster.DefaultRolesKey
		}
		oidcOverride = &o
	}
	h := handlers.New(handlers.Deps{
		Store: a.Store, Node: a.Node, Auth: a.Auth, OIDC: auth.NewOIDC(a.Auth, nil),
		Sessions: session.NewStore(a.Node.Sessions(), cfg.SessionIdle, cfg.SessionAbsolute),
		Log:      cfg.Log, Version: cfg.Version, ApplianceURL: a.URL, OIDCOverride: oidcOverride, Started: a.ready,
		Workflow: a.Workflow,
	})
	tlsCfg := serverTLS(cert)
	tlsCfg.NextProtos = []string{"http/1.1"}
	node := a.Node
	// Members ask for the peer server name: they get the member
	// certificate and must show theirs; browsers get the appliance's.
	tlsCfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if hello.ServerName != cluster.PeerServerName {
			return nil, nil
		}
		peer := node.PeerServerTLS()
		if peer == nil {
			return nil, fmt.Errorf("this appliance is not a cluster member yet")
		}
		peer.CipherSuites = tlsCfg.CipherSuites
		return peer, nil
	}
	a.server = &http.Server{
		Handler:           NewRouter(h, cfg.Log),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			cluster.RaftALPN: func(_ *http.Server, c *tls.Conn, _ http.Handler) { a.stream.HandOff(c) },
		},
	}
	a.server.RegisterOnShutdown(a.stream.CloseHanded)
	go func() {
		err := a.server.ServeTLS(a.ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()

	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	select {
	case <-a.Node.Ready():
	case <-readyCtx.Done():
		return nil, fmt.Errorf("the cluster did not become ready within a minute: raft state %s", a.Node.Status().RaftState)
	}
	if a.Node.IsLeader() {
		a.GeneratedAdminPassword, a.AdminCreated, err = a.Auth.EnsureAdmin(ctx, cfg.AdminPassword)
		if err != nil {
			return nil, err
		}
	}
	a.sweepDone = make(chan struct{})
	go a.sweep(a.Store, a.Node)
	a.expiryDone = make(chan struct{})
	go func() {
		defer close(a.expiryDone)
		a.Workflow.RunExpiry(a.stop)
	}()
	a.Node.RunBackupSchedule()
	close(a.ready)
	return a, nil
}

// sweep deletes expired sessions and stale sign-ins now and then.
func (a *Appliance) sweep(st *store.Store, node *cluster.Node) {
	defer close(a.sweepDone)
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	// Shutdown waits for the sweeper: a prune waiting for a primary ends
	// when it begins.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if err := st.DeleteExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
			a.log.Warn("delete stale sign-ins", "err", err)
		}
		if _, err := node.PruneSessions(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("delete expired sessions", "err", err)
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// Done reports the HTTPS server's end.
func (a *Appliance) Done() <-chan error { return a.done }

// Addr is the address the HTTPS server listens on.
func (a *Appliance) Addr() string { return a.ln.Addr().String() }

// Shutdown stops accepting requests, lets running ones finish, stops raft,
// closes the database and stops the private PostgreSQL.
func (a *Appliance) Shutdown(ctx context.Context) error {
	close(a.stop)
	if a.sweepDone != nil {
		<-a.sweepDone
	}
	if a.expiryDone != nil {
		<-a.expiryDone
	}
	// Operations first: a step that fails because this member stops is
	// left for the next primary, not ended as failed while requests drain.
	if a.Node != nil {
		a.Node.StopOperations()
	}
	if a.server != nil {
		// Running requests get a while to finish. One that is still running
		// then (an upload that stalled, a write waiting for a primary that
		// is going away) must not keep the appliance from stopping: its
		// connection is closed, and stopping raft below ends its wait.
		drain := drainTime(ctx)
		dctx, cancel := context.WithTimeout(ctx, drain)
		err := a.server.Shutdown(dctx)
		cancel()
		if err != nil {
			a.log.Warn("requests still running at shutdown: closing their connections", "waited", drain, "err", err)
			a.server.Close()
		}
	}
	return a.closeAll()
}

// drainTime is how long Shutdown lets running requests finish: half of
// what ctx leaves, at most maxDrain, so that stopping raft and the
// database has the other half.
func drainTime(ctx context.Context) time.Duration {
	const maxDrain = 10 * time.Second
	dl, ok := ctx.Deadline()
	if !ok {
		return maxDrain
	}
	return min(maxDrain, time.Until(dl)/2)
}

func (a *Appliance) closeAll() error {
	var errs []error
	if a.Node != nil {
		if err := a.Node.Shutdown(); err != nil {
			errs = append(errs, err)
		}
		a.Node = nil
	}
	if a.ln != nil && a.server == nil {
		a.ln.Close()
	}
	if a.Store != nil {
		a.Store.Close()
		a.Store = nil
	}
	if a.pg != nil {
		if err := a.pg.Stop(); err != nil {
			errs = append(errs, err)
		}
		a.pg = nil
	}
	return errors.Join(errs...)
}

// certificateCheck warns before the appliance certificate expires.
func certificateCheck(cert tls.Certificate) cluster.HealthCheck {
	return func(context.Context) (string, string) {
		if cert.Leaf == nil {
			return "", ""
		}
		left := time.Until(cert.Leaf.NotAfter)
		switch {
		case left <= 0:
			return cluster.HealthSick, "the appliance's TLS certificate has expired; browsers and members will refuse it"
		case left < 30*24*time.Hour:
			return cluster.HealthWarning, fmt.Sprintf("the appliance's TLS certificate expires in %d days", int(left.Hours()/24))
		}
		return "", ""
	}
}
