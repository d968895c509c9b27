// Package views renders the console's pages with templ. Views take plain
// view-model structs and import no store or cluster code.
package views

import "time"

// Page is what every page of the console shows around its content.
type Page struct {
	Title       string
	ClusterName string
	Nav         string // the active section
	User        *UserBadge
	Self        SelfBadge
	Banner      *Banner
	Flash       string
	FlashError  string
	Version     string
	// Refresh, when set, reloads the page after that many seconds in a
	// browser without script (with script, app.js updates it in place).
	Refresh int
	// Offline is set on every page of a member in Offline Workflow.
	Offline *OfflineBannerModel
}

// UserBadge is the signed-in user.
type UserBadge struct {
	Username string
	Role     string
	IsAdmin  bool
	// The access-request workflow's navigation.
	CanRequest bool
	CanApprove bool
}

// SelfBadge is the appliance serving the page.
type SelfBadge struct {
	Name       string
	State      string
	StateLabel string
	Tone       string // ok, warn, bad, info
}

// Banner is the cluster lock and the operation holding it.
type Banner struct {
	Kind        string
	OperationID string
	Actor       string
	Since       time.Time
	OwnerName   string
	StepName    string
	Percent     int
}

// LoginPage is the sign-in page.
type LoginPage struct {
	Page
	Username     string
	Error        string
	OIDCEnabled  bool
	OIDCName     string
	ReturnTo     string
	ApplianceURL string
}

// ClusterPage is the cluster view.
type ClusterPage struct {
	Page
	Summary    string
	Tolerance  string
	Members    []MemberRow
	Operations []OperationRow
	Diagram    Diagram
	// Mode is set when this appliance is not an ordinary member: being
	// added to a cluster, leaving one, or read-only after leaving.
	Mode *ModeBanner
	// AddReplica is the Add Replica button, for administrators.
	AddReplica Action
	// Reset is the Reset Cluster button, shown to administrators on a
	// member that lost consensus.
	Reset Action
	// Isolate is the Enable Offline Workflow button, beside Reset.
	Isolate Action
	// PrimaryChange says when the primary last changed and why.
	PrimaryChange string
	PrimarySince  time.Time
}

// ModeBanner explains on the cluster view why this appliance is not an
// ordinary member, and what an administrator can do about it.
type ModeBanner struct {
	State    string // Maintenance, LeavingCluster, StandaloneReadOnly
	Tone     string
	Headline string
	Text     string
	Reason   string
	Since    time.Time
	// Activate: the appliance may be activated (administrators only).
	Activate bool
}

// Action is a button of an operation: shown to administrators, enabled
// unless Reason says why not (with an optional link that helps).
type Action struct {
	Show      bool
	Reason    string
	LinkURL   string
	LinkLabel string
}

// MemberRow is one member in the cluster view.
type MemberRow struct {
	ID            string
	Name          string
	Address       string
	Role          string
	State         string
	StateLabel    string
	StateTone     string
	Version       string
	Health        string
	HealthReason  string
	HealthTone    string
	Uptime        string
	CheckedAt     time.Time
	EnrolledSince time.Time
	IsSelf        bool
	IsVoter       bool
	// InQuorum: the member takes part in consensus now (the primary with
	// its majority, a replica in contact, an appliance standing alone).
	InQuorum bool
	// CanUnjoin, CanFailover: an administrator may start these from the row.
	CanUnjoin   bool
	CanFailover bool
}

// Diagram is the SVG picture of the cluster.
type Diagram struct {
	Width, Height int
	Nodes         []DiagramNode
	Links         []DiagramLink
}

// DiagramNode is one member in the picture.
type DiagramNode struct {
	X, Y      int
	Name      string
	Role      string
	State     string
	Tone      string
	IsPrimary bool
	IsSelf    bool
}

// DiagramLink connects two members in the picture.
type DiagramLink struct {
	X1, Y1, X2, Y2 int
	Label          string
	Tone           string
	// Replication: a link between the primary and a replica (raft's
	// replication path), drawn stronger than links between replicas.
	Replication bool
	// Measured latency (network.go): the level of the worse direction
	// (OK, Warning, Bad, Down, Unknown), whether it is stale, and both
	// directions in words for hover.
	Level string
	Stale bool
	Title string
}

// OperationRow is one operation in a list.
type OperationRow struct {
	ID        string
	Kind      string
	Label     string // the operation as the console names it: Add Replica, Unjoin, ...
	Subject   string // the member it is about, when known
	State     string
	Tone      string
	Actor     string
	StartedAt time.Time
	EndedAt   *time.Time
	Error     string
}

// OperationPage shows an operation and its steps.
type OperationPage struct {
	Page
	Operation OperationRow
	Steps     []StepRow
	Running   bool
	// Current is the step running now, or the one that failed (index
	// into Steps; -1 when none).
	Current int
	// Done is how many steps succeeded; Percent the whole operation's.
	Done    int
	Percent int
	Took    string
	Outcome Outcome
}

// Outcome says how an operation ended (or that it still runs), and what
// to do next.
type Outcome struct {
	Tone      string
	Headline  string
	Text      string
	Next      string
	NextURL   string
	NextLabel string
}

// StepRow is one step of an operation.
type StepRow struct {
	Number    int
	Name      string
	State     string
	Tone      string
	Message   string
	Percent   int
	StartedAt *time.Time
	EndedAt   *time.Time
	Took      string
	IsCurrent bool
}

// ActivityPage is the Activity Center.
type ActivityPage struct {
	Page
	Events  []EventRow
	Types   []string
	Members []Option
	Filter  ActivityFilter
	Limit   int
	// Chain is the audit log's hash chain check.
	Chain AuditChain
}

// AuditChain is the result of verifying the audit log's hash chain.
type AuditChain struct {
	Checked int
	Broken  string // what breaks it, naming the first broken event; "" when intact
	Error   string // the check could not run
}

// ActivityFilter echoes the filter form.
type ActivityFilter struct {
	Type   string
	Member string
	Actor  string
	Since  string
	Until  string
}

// Option is a choice in a select.
type Option struct {
	Value string
	Label string
}

// EventRow is one event.
type EventRow struct {
	At          time.Time
	Type        string
	Summary     string
	Actor       string
	Member      string
	OperationID string
	Details     []KV
	Tone        string
}

// KV is a detail of an event.
type KV struct{ Key, Value string }

// UsersPage lists users.
type UsersPage struct {
	Page
	Users     []UserRow
	Roles     []string
	CanEdit   bool
	FormError string
	FormField string
	// FormUserID is the user whose row form (role, password, disabled)
	// failed; empty when the error comes from the "Add a user" form.
	FormUserID string
	NewName    string
	NewRole    string
	MinPassLen int
}

// UserRow is one user.
type UserRow struct {
	ID        string
	Username  string
	Role      string
	Source    string
	Disabled  bool
	CreatedAt time.Time
	IsSelf    bool
}

// SettingsPage shows the cluster settings.
type SettingsPage struct {
	Page
	CanEdit         bool
	ClusterName     string
	ClusterURL      string
	OIDCIssuer      string
	OIDCClientID    string
	OIDCHasSecret   bool
	OIDCDisplayName string
	OIDCRolesClaim  string
	OIDCRoleMapping string
	RedirectURL     string
	Roles           []string
	FormError       string
	FormField       string

	// Link latency thresholds, in milliseconds, as typed.
	LinkOKBelowMs      string
	LinkWarningBelowMs string
	// Offline Workflow's automatic modes, as typed.
	OfflineAutoIsolate, OfflineAutoResume   bool
	OfflineIsolateAfter, OfflineResumeAfter string
}

// ErrorPage is a page that says what went wrong.
type ErrorPage struct {
	Page
	Status  int
	Message string
}

// ReplicaFacts describe an appliance to add, as it answered.
type ReplicaFacts struct {
	ID          string
	Name        string
	Address     string
	Version     string
	State       string
	Fingerprint string
	ClusterName string
}

// AddReplicaPage is the Add Replica flow on the primary.
type AddReplicaPage struct {
	Page
	Step         string // address, found, confirm
	ReadOnly     string
	Address      string
	FormError    string
	Replica      ReplicaFacts
	AuthorizeURL string
	Grant        string
	Phrase       string
	Steps        []string
}

// EnrollAuthorizePage is on the replica: approve being added.
type EnrollAuthorizePage struct {
	Page
	ClusterID   string
	ClusterName string
	PrimaryName string
	Return      string
	Info        ReplicaFacts
	FormError   string
}

// UnjoinPage confirms removing a replica.
type UnjoinPage struct {
	Page
	MemberID   string
	MemberName string
	Address    string
	Phrase     string
	Refused    string
	FormError  string
	Steps      []string
}

// ActivatePage confirms Activate.
type ActivatePage struct {
	Page
	Name      string
	Phrase    string
	Refused   string
	FormError string
}

// FailoverPage confirms a planned failover.
type FailoverPage struct {
	Page
	MemberID   string
	MemberName string
	Primary    string
	Lag        string
	Phrase     string
	Refused    string
	FormError  string
}

// UnlockPage confirms Unlock Cluster.
type UnlockPage struct {
	Page
	Phrase    string
	Refused   string
	FormError string
}

// ResetPage confirms Reset Cluster on a member without consensus.
type ResetPage struct {
	Page
	Phrase    string
	Refused   string
	FormError string
	// Field names the form field FormError is about.
	Field     string
	Members   []ResetMember
	PrimaryID string
	// PrimaryName is what was typed as the new primary's name.
	PrimaryName string
}

// ResetMember is a member offered to keep or leave out.
type ResetMember struct {
	ID, Name, Address       string
	StateLabel, StateTone   string
	Reason                  string // why it cannot be kept (unreachable), if so
	Keep, IsPrimary, IsSelf bool
	Reachable               bool
}

// OfflineBannerModel is the banner of a member in Offline Workflow.
type OfflineBannerModel struct {
	Member   string
	Since    time.Time
	Resuming bool
}

// OfflinePage confirms Enable Offline Workflow or Resume Online.
type OfflinePage struct {
	Page
	Action       string // Enable Offline Workflow, Resume Online
	Phrase       string
	Lead         string
	Consequences []string
	Danger       bool
	Refused      string
	FormError    string
}

// DroppedRequest is a request made in Offline Workflow and dropped at
// Resume Online, as its requester is told.
type DroppedRequest struct {
	Account string
	Member  string
	At      time.Time
}

// --- Backups (backup and restore) ---

// BackupsPage lists this appliance's backups and offers Back up now and
// Restore.
type BackupsPage struct {
	Page
	Backups []BackupRow
	// Created names the backup just made; Return is the confirmation page
	// the administrator came from ("Back up first").
	Created     string
	Return      string
	ReturnLabel string
	FormError   string
	// RestoreError is why the last restore was refused; RestoreRefused
	// why this appliance cannot take a restore at all.
	RestoreError   string
	RestoreRefused string
	RestorePhrase  string
	MinPassphrase  int
	Schedule       string
	Directory      string
}

// BackupRow is one backup file.
type BackupRow struct {
	Name      string
	Size      string
	CreatedAt time.Time
	Kind      string
	Cluster   string
	RaftIndex uint64
	Build     string
	Rows      int64
	Problem   string
}

// BackUpFirstLink is the "Back up first" offer on a confirmation page.
type BackUpFirstLink struct {
	Return string // the confirmation page to come back to
	Label  string
}
