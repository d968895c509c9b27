package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"conclave/backup"
	"conclave/cluster"
	"conclave/store"
	"conclave/views"
)

// maxBackupUpload bounds an uploaded backup (a restore).
const maxBackupUpload = 8 << 30

// backupTimeout bounds making or restoring a backup for one request.
const backupTimeout = 30 * time.Minute

// longRequest lets one request outlast the server's read and write
// timeouts (a minute): making, downloading and uploading a backup of a large
// cluster take longer.
func longRequest(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(backupTimeout)
	rc.SetReadDeadline(deadline)
	rc.SetWriteDeadline(deadline)
}

// returnPages are the confirmation pages that offer "Back up first", and
// what their "Continue" button says.
func returnLabel(path string) string {
	switch {
	case strings.HasPrefix(path, "/cluster/add-replica"):
		return "Add Replica"
	case strings.HasSuffix(path, "/unjoin"):
		return "Unjoin"
	case strings.HasSuffix(path, "/failover"):
		return "Failover"
	case strings.HasPrefix(path, "/cluster/reset"):
		return "Reset Cluster"
	}
	return "where you were"
}

// BackupsPage lists the backups and offers Back up now and Restore.
func (h *Handlers) BackupsPage(w http.ResponseWriter, r *http.Request) {
	h.renderBackups(w, r, http.StatusOK, views.BackupsPage{Created: r.URL.Query().Get("created")})
}

func (h *Handlers) renderBackups(w http.ResponseWriter, r *http.Request, status int, p views.BackupsPage) {
	p.Page = h.page(r, "Backups", "backups")
	if ret := r.URL.Query().Get("return"); ret != "" && p.Return == "" {
		p.Return = ret
	}
	if p.Return != "" {
		p.Return = safeReturn(p.Return)
		if p.Return == "/" {
			p.Return = ""
		}
	}
	p.ReturnLabel = returnLabel(p.Return)
	p.RestorePhrase = cluster.PhraseRestore
	p.MinPassphrase = backup.MinPassphrase
	cfg := h.Node.BackupSettings()
	p.Directory = cfg.Dir
	p.Schedule = "No scheduled backups (start the appliance with --backup-every to have them)."
	if cfg.Every > 0 {
		p.Schedule = fmt.Sprintf("A backup every %s; the newest %d scheduled backups are kept.", cfg.Every, cfg.Keep)
	}
	if err := h.Node.CheckRestore(r.Context()); err != nil {
		p.RestoreRefused = err.Error()
	}
	files, err := h.Node.ListBackups()
	if err != nil {
		p.FormError = err.Error()
	}
	for _, f := range files {
		row := views.BackupRow{Name: f.Name, Size: views.Bytes(f.Size), CreatedAt: f.CreatedAt, Kind: "by hand", Problem: f.Problem,
			Cluster: f.Manifest.ClusterName, RaftIndex: f.Manifest.RaftIndex, Build: f.Manifest.Build}
		if f.Scheduled {
			row.Kind = "scheduled"
		}
		for _, t := range f.Manifest.Tables {
			row.Rows += t.Rows
		}
		p.Backups = append(p.Backups, row)
	}
	render(w, r, status, views.Backups(p))
}

// CreateBackupForm is POST /backups: Back up now.
func (h *Handlers) CreateBackupForm(w http.ResponseWriter, r *http.Request) {
	if err := parseForm(w, r); err != nil {
		h.renderError(w, r, err)
		return
	}
	longRequest(w)
	ret := r.PostFormValue("return")
	pass := r.PostFormValue("passphrase")
	if pass != r.PostFormValue("passphrase2") {
		h.renderBackups(w, r, http.StatusUnprocessableEntity, views.BackupsPage{Return: ret, FormError: "The two passphrases differ; type the same one twice."})
		return
	}
	me, _ := principal(r)
	ctx, cancel := context.WithTimeout(r.Context(), backupTimeout)
	defer cancel()
	bf, err := h.Node.CreateBackup(ctx, me.Username, pass)
	if err != nil {
		status, ae := h.backupErrorStatus(r, err)
		h.renderBackups(w, r, status, views.BackupsPage{Return: ret, FormError: ae})
		return
	}
	next := "/backups?created=" + bf.Name
	if ret = safeReturn(ret); ret != "/" {
		next += "&return=" + url.QueryEscape(ret)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handlers) backupErrorStatus(r *http.Request, err error) (int, string) {
	if errors.Is(err, backup.ErrShortPassphrase) {
		return http.StatusUnprocessableEntity, err.Error()
	}
	status, ae := h.errorStatus(r, err)
	return status, ae.Message
}

// DownloadBackup is GET /backups/{name} and GET /api/v1/backups/{name}.
func (h *Handlers) DownloadBackup(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	f, err := h.Node.OpenBackup(name)
	if err != nil {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h.writeError(w, r, err)
		} else {
			h.renderError(w, r, err)
		}
		return
	}
	defer f.Close()
	longRequest(w)
	me, _ := principal(r)
	if err := h.Node.RecordEvent(r.Context(), me.Username, cluster.EventSpec{Type: "BackupDownloaded", Details: map[string]string{"file": name}}); err != nil {
		h.Log.Warn("record backup download", "err", err)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Cache-Control", "no-store")
	fi, _ := f.Stat()
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// apiBackup is a backup in the JSON API.
type apiBackup struct {
	Name      string          `json:"name"`
	Size      int64           `json:"size"`
	CreatedAt time.Time       `json:"createdAt"`
	Scheduled bool            `json:"scheduled"`
	Manifest  backup.Manifest `json:"manifest"`
	Problem   string          `json:"problem,omitempty"`
}

func toAPIBackup(f cluster.BackupFile) apiBackup {
	return apiBackup{Name: f.Name, Size: f.Size, CreatedAt: f.CreatedAt, Scheduled: f.Scheduled, Manifest: f.Manifest, Problem: f.Problem}
}

// APIBackups is GET /api/v1/backups.
func (h *Handlers) APIBackups(w http.ResponseWriter, r *http.Request) {
	files, err := h.Node.ListBackups()
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := []apiBackup{}
	for _, f := range files {
		out = append(out, toAPIBackup(f))
	}
	writeJSON(w, http.StatusOK, out)
}

// APICreateBackup is POST /api/v1/backups {passphrase}.
func (h *Handlers) APICreateBackup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Passphrase string `json:"passphrase"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if len([]rune(req.Passphrase)) < backup.MinPassphrase {
		h.writeError(w, r, badRequest("passphrase", "%v", backup.ErrShortPassphrase))
		return
	}
	longRequest(w)
	me, _ := principal(r)
	ctx, cancel := context.WithTimeout(r.Context(), backupTimeout)
	defer cancel()
	bf, err := h.Node.CreateBackup(ctx, me.Username, req.Passphrase)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/backups/"+bf.Name)
	writeJSON(w, http.StatusCreated, toAPIBackup(bf))
}

// receiveBackup reads a restore upload (multipart: file, passphrase,
// confirm) into a file of its own; the caller removes it.
func (h *Handlers) receiveBackup(w http.ResponseWriter, r *http.Request) (path, passphrase string, err error) {
	mt, _, perr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if perr != nil || mt != "multipart/form-data" {
		return "", "", &apiError{Status: http.StatusUnsupportedMediaType, Message: "send the backup as multipart/form-data with the fields file, passphrase and confirm"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBackupUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return "", "", badRequest("", "the upload could not be read: %v", err)
	}
	dir := filepath.Join(h.Node.BackupSettings().Dir, "incoming")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("upload directory: %w", err)
	}
	var confirm string
	defer func() {
		if err != nil && path != "" {
			os.Remove(path)
			path = ""
		}
	}()
	for {
		part, perr := mr.NextPart()
		if perr == io.EOF {
			break
		}
		if perr != nil {
			return path, "", uploadError(perr)
		}
		switch part.FormName() {
		case "file":
			if path != "" {
				return path, "", badRequest("file", "send one backup file")
			}
			f, ferr := os.CreateTemp(dir, "upload-*")
			if ferr != nil {
				return "", "", fmt.Errorf("upload: %w", ferr)
			}
			path = f.Name()
			_, cerr := io.Copy(f, part)
			f.Close()
			if cerr != nil {
				return path, "", uploadError(cerr)
			}
		case "passphrase", "confirm":
			v, rerr := io.ReadAll(io.LimitReader(part, 4<<10))
			if rerr != nil {
				return path, "", uploadError(rerr)
			}
			if part.FormName() == "passphrase" {
				passphrase = string(v)
			} else {
				confirm = string(v)
			}
		default:
			return path, "", badRequest(part.FormName(), "unknown field %q: send file, passphrase and confirm", part.FormName())
		}
	}
	if err := checkPhrase(confirm, cluster.PhraseRestore); err != nil {
		return path, "", err
	}
	if path == "" {
		return "", "", badRequest("file", "choose the backup file to restore")
	}
	if passphrase == "" {
		return path, "", badRequest("passphrase", "the backup's passphrase is required")
	}
	return path, passphrase, nil
}

func uploadError(err error) error {
	var big *http.MaxBytesError
	if errors.As(err, &big) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("the upload is larger than %d bytes", big.Limit)}
	}
	return badRequest("file", "the upload could not be read: %v", err)
}

// restore runs a restore from an upload for the console and the API.
func (h *Handlers) restore(w http.ResponseWriter, r *http.Request) (backup.Manifest, error) {
	if err := h.Node.CheckRestore(r.Context()); err != nil {
		return backup.Manifest{}, err
	}
	longRequest(w)
	path, pass, err := h.receiveBackup(w, r)
	if path != "" {
		defer os.Remove(path)
	}
	if err != nil {
		return backup.Manifest{}, err
	}
	me, _ := principal(r)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backupTimeout)
	defer cancel()
	return h.Node.RestoreBackup(ctx, me.Username, path, pass)
}

// RestoreForm is POST /backups/restore.
func (h *Handlers) RestoreForm(w http.ResponseWriter, r *http.Request) {
	if _, err := h.restore(w, r); err != nil {
		status, msg := h.backupErrorStatus(r, err)
		h.renderBackups(w, r, status, views.BackupsPage{RestoreError: "Nothing was changed: " + msg})
		return
	}
	// The sessions are the backup's now: sign in with one of its accounts.
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// APIRestore is POST /api/v1/backups/restore (multipart: file, passphrase,
// confirm).
func (h *Handlers) APIRestore(w http.ResponseWriter, r *http.Request) {
	m, err := h.restore(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": h.Node.SelfState(), "manifest": m})
}

// backupEventSummary says what a backup event means in a sentence.
func backupEventSummary(e store.Event) string {
	d := e.Details
	switch e.Type {
	case "BackupCreated":
		return fmt.Sprintf("A %s backup was made at raft index %s (%s bytes): %s.", d["kind"], d["raftIndex"], d["bytes"], d["file"])
	case "BackupDownloaded":
		return fmt.Sprintf("%s downloaded the backup %s.", e.Actor, d["file"])
	case "BackupFailed":
		return "The scheduled backup failed: " + d["error"] + "."
	case "BackupRestored":
		return "This appliance was " + d["reason"] + "."
	}
	return ""
}
